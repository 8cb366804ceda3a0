"""`tkds import`: saved captures into the same tables, through the same parser and upserts as `collect`.

A bad file (malformed, nested too deeply, too large, not a regular file, unreadable) is named with its
reason and skipped; a record with an invalid id is refused and counted by reason; the rest goes on.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tkds.collector.media import inspect
from tkds.collector.parse import CaptureError, parse_capture
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
    media_ok: int = 0
    media_failed: int = 0
    wall_s: float = 0.0

    @property
    def failures_by_reason(self) -> Counter:
        return Counter(reason.split(":")[0] for reason in self.failures.values())


def import_captures(
    db: str | Path, files: list[str | Path], media: str | Path | None = None, progress: bool = True
) -> ImportSummary:
    """Parse each file and upsert what it holds; a bad file is named with its reason and skipped.

    With `media`, files named ID.mp4 (or .webm, .mkv, .mov) there are probed, hashed and recorded in
    the `media` table in place, for the known videos that have no usable media yet.
    """
    started = time.perf_counter()
    summary = ImportSummary(files=len(files))
    run_started = utcnow()
    with Store.open(db) as store, progress_bar("import", len(files), enabled=progress) as bar:
        for file in map(Path, files):
            try:
                parsed = parse_capture(file)
                # A capture was observed when it was saved: its file time is the snapshot time.
                observed = datetime.fromtimestamp(file.stat().st_mtime, UTC).replace(tzinfo=None)
            except CaptureError as error:
                summary.failures[str(file)] = str(error)
            except OSError as error:
                summary.failures[str(file)] = f"unreadable: {error.strerror or error}"
            else:
                _store(store, file, parsed, observed, summary)
            bar.advance(0)
        if media is not None:
            _register_media(store, Path(media), summary, progress)
        summary.wall_s = time.perf_counter() - started
        store.record_run(
            f"import-{run_started:%Y%m%dT%H%M%S%f}",
            run_started,
            {"command": "import", "files": [str(f) for f in files]},
            {
                "files": summary.files,
                "imported": summary.imported,
                "videos_new": summary.videos_new,
                "videos_updated": summary.videos_updated,
                "failures": dict(summary.failures_by_reason),
                "refused": dict(summary.refused),
                "media_ok": summary.media_ok,
                "media_failed": summary.media_failed,
            },
        )
    return summary


def _store(store: Store, file: Path, parsed, observed: datetime, summary: ImportSummary) -> None:
    """Upsert one parsed file into the summary's counts; a file of nothing but refusals is a failure."""
    has_records = parsed.videos or parsed.authors or parsed.music or parsed.comments
    if not has_records and not parsed.refused:
        summary.failures[str(file)] = "empty: no TikTok records found in it"
        return
    counts = store.upsert(parsed, source=f"import:{file.name}", observed_at=observed)
    summary.refused.update(counts["refused_reasons"])
    if counts["refused"]:
        first = counts["refused_examples"][0]
        summary.refusals[str(file)] = f"{counts['refused']} refused, e.g. {first}"
    if not has_records:
        summary.failures[str(file)] = f"refused: every record in it has an invalid id, e.g. {first}"
        return
    summary.imported += 1
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
