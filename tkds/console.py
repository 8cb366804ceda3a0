"""Progress bars and summaries on stderr, shared by every long-running stage."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True, emoji=False)  # ":x:" in a file name or a column stays text


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Progress]:
    """A rich progress bar with one task, id 0; `advance(0)` moves it. Nothing to do shows no bar."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled or total == 0,
        transient=False,
    )
    with progress:
        progress.add_task(description, total=total)
        yield progress
