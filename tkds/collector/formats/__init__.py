"""Import formats: one small module per source, each detected from a file's content, not its name.

A `Format` has a `sniff` (does this head of a file look like mine?) and a `read` that streams the file
as `Parsed` batches into the one upsert path. Specific formats come first; TikTok's own pages and
API JSON (`web`, which also takes any other JSON, to name its fault) and any table (`table`) come
last. A file no format can read is a `CaptureError` naming the formats tried.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tkds.collector.parse import CaptureError, open_regular_file
from tkds.collector.records import Parsed

HEAD_BYTES = 64 * 1024  # what a sniffer sees of a file
BATCH = 2000  # records per upsert when a format streams


@dataclass(frozen=True)
class Sample:
    """The head of a file, for sniffing: its first HEAD_BYTES, as bytes and as text."""

    path: Path
    head: bytes
    text: str
    truncated: bool  # the file is longer than the head

    @property
    def is_text(self) -> bool:
        """No NUL byte in the head: text (pages, JSON, CSV) never has one, and random or binary data of
        that size almost surely does, so a stray "<a " in it is not taken for HTML."""
        return b"\0" not in self.head


@dataclass(frozen=True)
class ImportOptions:
    """What a user passed beside the files: `mapping` is `--map column=field,…` for tables."""

    mapping: dict[str, str] | None = None


@dataclass
class FileReport:
    """What reading one file found: its format, notes to show (a table's chosen mapping), and rows."""

    format: str = ""
    title: str = ""
    notes: list[str] = field(default_factory=list)
    rows: int = 0  # table rows or export items read
    videos: int = 0  # what went to the store (set by the importer)
    authors: int = 0
    comments: int = 0


@dataclass(frozen=True)
class Format:
    name: str  # stored in videos.source as "import:NAME:FILE"
    title: str  # what users read: "tiktok-scraper JSON export"
    sniff: Callable[[Sample], bool]
    read: Callable[[Path, ImportOptions, FileReport], Iterator[Parsed]]
    check: Callable[[ImportOptions], None] | None = None  # refuses bad options before any file is read


def formats() -> list[Format]:
    """Every format, in the order they are tried."""
    from tkds.collector.formats import (
        apify,
        apify_csv,
        pyktok,
        research_api,
        table,
        tiktok_scraper,
        tiktok_scraper_csv,
        web,
    )

    exports = [apify.FORMAT, tiktok_scraper.FORMAT, research_api.FORMAT]  # other tools' JSON
    tables = [tiktok_scraper_csv.FORMAT, apify_csv.FORMAT, pyktok.FORMAT, table.FORMAT]  # tools' CSVs first
    return [*exports, web.FORMAT, *tables]


def by_name(name: str) -> Format:
    for candidate in formats():
        if candidate.name == name:
            return candidate
    raise ValueError(f"no import format named {name!r}")


def sample(path: Path) -> Sample:
    """A regular file's head; a directory, FIFO or device is a `CaptureError`, never read."""
    descriptor, info = open_regular_file(path)
    try:
        head = os.read(descriptor, HEAD_BYTES)
    finally:
        os.close(descriptor)
    text = head.decode("utf-8-sig", errors="replace")
    return Sample(path, head, text, info.st_size > len(head))


def detect(path: Path, forced: str | None = None) -> Format:
    """The format named `forced`, else the first that claims the file; none is a `CaptureError` naming
    those tried. Either way the file must be a regular file that is not empty (a FIFO is never read)."""
    head = sample(path)
    if not head.head.strip():
        raise CaptureError("empty")
    if forced is not None:
        return by_name(forced)
    for candidate in formats():
        if candidate.sniff(head):
            return candidate
    raise unknown_format()


def unknown_format() -> CaptureError:
    """The error for a file no format reads, naming every format tried."""
    return CaptureError("unknown", "tried " + ", ".join(f.title for f in formats()))


def batched(parsed: Iterator[Parsed], size: int = BATCH) -> Iterator[Parsed]:
    """Records merged into batches of about `size` videos, for fewer upserts (each snapshot keeps its
    own observation time, so rows scraped at different times share a batch)."""
    batch = Parsed()
    for part in parsed:
        batch.extend(part)
        batch.shape = part.shape
        if len(batch.videos) + len(batch.refused) >= size:
            yield batch.deduplicated()
            batch = Parsed()
    if batch.videos or batch.authors or batch.music or batch.comments or batch.refused:
        yield batch.deduplicated()
