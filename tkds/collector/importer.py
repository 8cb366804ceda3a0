"""`tkds import`: saved captures, other tools' exports and data tables into the same tables as `collect`.

Each file's format is detected from its content (`tkds.collector.formats`) and streamed in batches
through the one upsert path. A bad file (no known format, malformed, nested too deeply, too large, not
a regular file, unreadable) is named with its reason and skipped, keeping what it yielded before the
fault; a record with an invalid or lossy id is refused and counted by reason; the rest goes on.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tkds.collector import drift, formats
from tkds.collector.formats import FileReport, ImportOptions
from tkds.collector.media import inspect
from tkds.collector.parse import CaptureError
from tkds.collector.records import Parsed
from tkds.collector.store import Store, utcnow, valid_id_sql
from tkds.console import progress_bar


@dataclass
class ImportSummary:
    files: int = 0
    imported: int = 0
    videos_new: int = 0
    videos_updated: int = 0
    comments: int = 0
    authors: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # file -> reason
    refused: Counter = field(default_factory=Counter)  # records refused for an invalid id, by reason
    refusals: dict[str, str] = field(default_factory=dict)  # file -> how many were refused, and the first
    reports: dict[str, FileReport] = field(default_factory=dict)  # file -> its format and what it held
    media_ok: int = 0
    media_failed: int = 0
    wall_s: float = 0.0
    census: drift.FieldCensus = field(default_factory=drift.FieldCensus)  # missing fields, unseen keys
    warnings: list[str] = field(default_factory=list)  # payload drift, one line each

    @property
    def failures_by_reason(self) -> Counter:
        return Counter(reason.split(":")[0] for reason in self.failures.values())


def import_captures(
    db: str | Path,
    files: list[str | Path],
    media: str | Path | None = None,
    progress: bool = True,
    tables: list[str | Path] = (),
    mapping: dict[str, str] | None = None,
) -> ImportSummary:
    """Import each file in the format detected from its content, and each of `tables` as a table.

    `mapping` (`--map column=field,…`) names the tables' columns in `tkds.collector.formats.flat`'s
    fields; without it, common column names are recognised. With `media`, files named ID.mp4 (or
    .webm, .mkv, .mov) there are probed, hashed and recorded in the `media` table in place, for the
    known videos that have no usable media yet.
    """
    started = time.perf_counter()
    options = ImportOptions(mapping=mapping)
    jobs = [(Path(f), None) for f in files] + [(Path(f), "table") for f in tables]
    for reader in formats.formats():  # a bad --map fails before anything is read
        if reader.check is not None:
            reader.check(options)
    summary = ImportSummary(files=len(jobs))
    run_started = utcnow()
    with Store.open(db) as store, progress_bar("import", len(jobs), enabled=progress) as bar:
        for file, forced in jobs:
            _import_file(store, file, forced, options, summary)
            bar.advance(0)
        if media is not None:
            _register_media(store, Path(media), summary, progress)
        summary.wall_s = time.perf_counter() - started
        summary.warnings = summary.census.warnings(drift.history(store))
        store.record_run(
            f"import-{run_started:%Y%m%dT%H%M%S%f}",
            run_started,
            {"command": "import", "files": [str(f) for f, _ in jobs]},
            {
                "files": summary.files,
                "imported": summary.imported,
                "videos_new": summary.videos_new,
                "videos_updated": summary.videos_updated,
                "failures": dict(summary.failures_by_reason),
                "refused": dict(summary.refused),
                "formats": dict(Counter(r.format for r in summary.reports.values() if r.format)),
                "media_ok": summary.media_ok,
                "media_failed": summary.media_failed,
                "fields": summary.census.as_dict(),
                "warnings": summary.warnings,
            },
        )
    return summary


def _import_file(
    store: Store, file: Path, forced: str | None, options: ImportOptions, summary: ImportSummary
) -> None:
    """Detect, stream and upsert one file; a fault names the file, keeping the batches before it."""
    report = summary.reports[str(file)] = FileReport()
    stored = _Stored()
    try:
        reader = formats.detect(file, forced)
        report.format, report.title = reader.name, reader.title
        # A capture was observed when it was saved: its file time is the snapshot time, unless the
        # export gives its own scrape time.
        observed = datetime.fromtimestamp(file.stat().st_mtime, UTC).replace(tzinfo=None)
        for batch in reader.read(file, options, report):
            summary.census.add(batch, f"import:{reader.name}")
            _store(store, f"import:{reader.name}:{file.name}", batch, observed, summary, stored)
            report.videos += len(batch.videos)
            report.authors += len(batch.authors)
            report.comments += len(batch.comments)
    except CaptureError as error:
        summary.failures[str(file)] = str(error)
    except OSError as error:
        summary.failures[str(file)] = f"unreadable: {error.strerror or error}"
    else:
        if not stored.records and not stored.refused:
            summary.failures[str(file)] = "empty: no TikTok records found in it"
        elif not stored.records:
            summary.failures[str(file)] = (
                f"refused: every record in it has an invalid id, e.g. {stored.first_refusal}"
            )
    if stored.refused:
        summary.refusals[str(file)] = f"{stored.refused} refused, e.g. {stored.first_refusal}"
    if stored.records:
        summary.imported += 1


@dataclass
class _Stored:
    """What one file has put in the store so far."""

    records: int = 0
    refused: int = 0
    first_refusal: str = ""


def _store(
    store: Store, source: str, parsed: Parsed, observed: datetime, summary: ImportSummary, stored: _Stored
) -> None:
    """Upsert one batch into the summary's and the file's counts."""
    records = len(parsed.videos) + len(parsed.authors) + len(parsed.music) + len(parsed.comments)
    if not records and not parsed.refused:
        return
    counts = store.upsert(parsed, source=source, observed_at=observed)
    summary.refused.update(counts["refused_reasons"])
    if counts["refused"] and not stored.first_refusal:
        stored.first_refusal = counts["refused_examples"][0]
    stored.refused += counts["refused"]
    stored.records += records
    summary.videos_new += counts["new"]
    summary.videos_updated += counts["updated"]
    summary.comments += len(parsed.comments)
    summary.authors += len(parsed.authors)


MEDIA_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov")


def _register_media(store: Store, media_dir: Path, summary: ImportSummary, progress: bool) -> None:
    wanted = {
        row[0]
        for row in store.db.execute(
            f"""SELECT id FROM videos WHERE {valid_id_sql("id")}
                AND id NOT IN (SELECT video_id FROM media WHERE status = 'ok')"""
        ).fetchall()
    }
    files = [f for f in sorted(media_dir.iterdir()) if f.suffix in MEDIA_SUFFIXES and f.stem in wanted]
    with (
        ThreadPoolExecutor(max_workers=4) as pool,
        progress_bar("media", len(files), enabled=progress) as bar,
    ):
        for result in pool.map(lambda f: inspect(f.stem, f, f), files):
            store.record_media(result)
            summary.media_ok += result.status == "ok"
            summary.media_failed += result.status != "ok"
            bar.advance(0)
