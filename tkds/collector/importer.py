"""`tkds import`: saved captures into the same tables, through the same parser and upserts as `collect`."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tkds.collector.parse import CaptureError, parse_capture
from tkds.collector.store import Store, utcnow
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
    wall_s: float = 0.0

    @property
    def failures_by_reason(self) -> Counter:
        return Counter(reason.split(":")[0] for reason in self.failures.values())


def import_captures(db: str | Path, files: list[str | Path], progress: bool = True) -> ImportSummary:
    """Parse each file and upsert what it holds; a bad file is named with its reason and skipped."""
    started = time.perf_counter()
    summary = ImportSummary(files=len(files))
    run_started = utcnow()
    with Store.open(db) as store, progress_bar("import", len(files), enabled=progress) as bar:
        for file in map(Path, files):
            try:
                parsed = parse_capture(file)
            except CaptureError as error:
                summary.failures[str(file)] = str(error)
            except OSError as error:
                summary.failures[str(file)] = f"unreadable: {error.strerror}"
            else:
                # A capture was observed when it was saved: its file time is the snapshot time.
                observed = datetime.fromtimestamp(file.stat().st_mtime, UTC).replace(tzinfo=None)
                counts = store.upsert(parsed, source=f"import:{file.name}", observed_at=observed)
                summary.imported += 1
                summary.videos_new += counts["new"]
                summary.videos_updated += counts["updated"]
                summary.comments += len(parsed.comments)
                summary.authors += len(parsed.authors)
            bar.advance(0)
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
            },
        )
    return summary
