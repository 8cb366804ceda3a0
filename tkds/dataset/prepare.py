"""Prepare: every selected post's sample files in OUT/.work/ID/, on every core, reusing earlier runs' work.

One post per distinct sha256 is prepared (exact copies share it). Posts the build encodes (every post at a
size, photo posts at --size 0 too) go to a pool of `workers` threads, each waiting on one single-threaded
ffmpeg (`tkds.dataset.transcode`), so the transcode scales with the workers; the others are kept as
collected (`passthrough`). Work is handed to the pool a few posts ahead of the results, so a 290,000-post
build holds a handful of futures, not one per post.
"""

from __future__ import annotations

import os
import time
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from tkds import ids
from tkds.console import progress_bar
from tkds.dataset.select import Candidate
from tkds.dataset.transcode import (
    Prepared,
    TranscodeParams,
    load_prepared,
    passthrough,
    prepare,
    prepare_photo,
)
from tkds.engines import LocalEngine, RayEngine
from tkds.errors import TkdsError

if TYPE_CHECKING:
    from tkds.dataset.build import ShardParams, ShardSummary

AHEAD = 4  # posts handed to the pool per worker before their results are taken
MAX_WORKERS = 1024  # more is a typo


def default_workers() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def check_workers(workers: object) -> int:
    """`workers`, or every core for None; anything but a whole number from 1 is a `TkdsError`."""
    if workers is None:
        return default_workers()
    if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= MAX_WORKERS:
        raise TkdsError(
            f"--workers {ids.preview(workers)}: give the number of parallel ffmpeg processes, "
            f"1 to {MAX_WORKERS} (default: every core)"
        )
    return workers


def encoded(video: Candidate, size: int) -> bool:
    """Whether the build encodes this post (and computes its frame hashes): every post at a size, and a
    photo post's slideshow even at --size 0."""
    return bool(size) or video.kind == "photo"


def prepare_all(
    candidates: list[Candidate],
    work: Path,
    params: ShardParams,
    workers: int,
    progress: bool,
    summary: ShardSummary,
    engine: LocalEngine | RayEngine | None = None,
) -> dict[str, Prepared]:
    """video id → its prepared files, for one post per distinct sha256, on `workers` threads (each
    waiting on one ffmpeg) or as tasks of `engine` (`tkds.engines`); failures go to `summary`."""
    workers = check_workers(workers)
    transcode = TranscodeParams(size=params.size, fps=params.fps)
    prepared: dict[str, Prepared] = {}
    pending: list[Candidate] = []
    seen: set[str] = set()
    for video in sorted(candidates, key=lambda v: (v.create_time or 0, v.id)):
        if video.sha256 in seen:
            continue
        seen.add(video.sha256)
        encode = encoded(video, params.size)
        earlier = load_prepared(work, video.id, video.sha256, transcode, video.kind) if encode else None
        if earlier:
            prepared[video.id] = earlier
        elif missing := _missing_media(video):
            summary.failures[video.id] = missing
        elif not encode:
            prepared[video.id] = passthrough(video.id, video.path, video.media, video.sha256)
        else:
            pending.append(video)
    started = time.perf_counter()
    engine = engine or LocalEngine(workers)
    one = partial(prepare_one, work=work.resolve(), transcode=transcode)  # absolute: any node may run it
    with (
        progress_bar("transcode", len(pending), enabled=progress) as bar,
        closing(engine.map(one, pending, AHEAD * workers)) as results,
    ):
        for video, result in results:
            if result.error is None:
                prepared[video.id] = result
            elif result.error.startswith("disk_full"):
                raise TkdsError(
                    f"video {video.id}: no space left on device while transcoding into {work}; "
                    "free space and re-run the same command to resume"
                )
            else:
                summary.failures[video.id] = result.error
            bar.advance(0)
    summary.prepare_s = time.perf_counter() - started
    summary.prepared = len(prepared)
    return prepared


def _missing_media(video: Candidate) -> str | None:
    """Why a selected video or photo post cannot be prepared from its files, or None."""
    if video.kind != "photo":
        files = [video.path]
    elif not video.images:
        return "missing: no images are recorded for this photo post; re-collect it"
    else:
        files = [Path(image["path"]) for image in video.images] + ([video.path] if video.path else [])
    for path in files:
        if path is None or not path.is_file():
            return f"missing: media file {path} is gone; re-collect it"
    return None


def prepare_one(video: Candidate, work: Path, transcode: TranscodeParams) -> Prepared:
    """The unit of work: one post's sample files in WORK/ID/, facts written last (any node may run it)."""
    if video.kind == "photo":
        return prepare_photo(video.id, video.images, video.path, work, transcode, video.media, video.sha256)
    return prepare(video.id, video.path, work, transcode, video.media, video.sha256)
