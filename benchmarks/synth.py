"""SynthTok generation speed against its limit: encoding the very same frames and audio.

Both are measured in this run, on this machine, with the same worker count:
  total        `tkds.synth.generate` end to end (plan, render, encode, item JSON, corpus.json)
  encode-only  the same frames and soundtracks, rendered beforehand, only encoded
Prints videos/s, the share of worker time spent in the H.264/AAC encode, and total / encode-only
(aim: at most 2.0).

With `--plan N`, instead: `plan_corpus` (every item decided, before any pixel) for N and N/10 posts, and
the ratio of their videos/s (aim: at least 0.8, i.e. linear; the thesis's 290,000 is the target size).

With `--pool K`, instead: the whole pooled corpus, `generate(..., media_pool=K)` with the CLI's photo
share (plan, K clips, links, item JSON, corpus.json), for `--videos` N and N/10 posts: wall time, peak
resident memory and disk size; the ratio of their posts/s outside the rendering step, which costs the
same K clips at any N (aim: at least 0.8, i.e. linear); and the wall time at N against the issue's
"minutes, not hours" (aim: at most 10 minutes, for up to 290,000 posts on an idle machine).

    python benchmarks/synth.py [--videos 40] [--workers 2] [--seconds 6]
    python benchmarks/synth.py --plan 290000
    python benchmarks/synth.py --pool 256 --videos 290000
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from tkds.synth import SynthConfig, generate
from tkds.synth.encode import encode_mp4
from tkds.synth.generate import VideoJob, plan_corpus, render_media


def _prerender(job: VideoJob, folder: Path) -> tuple[Path, Path, VideoJob]:
    frames, audio = render_media(job)
    frames_path, audio_path = folder / f"{job.index}.frames.npy", folder / f"{job.index}.audio.npy"
    np.save(frames_path, frames)
    np.save(audio_path, audio)
    return frames_path, audio_path, job


def _encode_only(task: tuple[Path, Path, VideoJob]) -> None:
    frames_path, audio_path, job = task
    frames, audio = np.load(frames_path), np.load(audio_path)
    encode_mp4(frames, audio, job.sample_rate, job.visual.fps, job.mp4.with_suffix(".encode-only.mp4"))


def plan_rates(videos: int) -> None:
    """Posts planned per second at `videos` and at a tenth of it: 1.0 is linear."""
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (max(1, videos // 10), videos):
            started = time.perf_counter()
            plan_corpus(SynthConfig(videos=n), Path(tmp))
            rates[n] = n / (time.perf_counter() - started)
            print(f"plan {n:>9,} posts: {n / rates[n]:7.2f} s = {rates[n]:,.0f} posts/s")
    ratio = rates[videos] / rates[max(1, videos // 10)]
    verdict = "met" if ratio >= 0.8 else "NOT met"
    print(f"posts/s at {videos:,} / at a tenth: {ratio:.2f} (aim >= 0.8: {verdict})")


POOL_BUDGET_S = 600  # 10 minutes for up to the thesis's 290,000 posts


def _disk_bytes(folder: Path) -> int:
    """Bytes the folder takes on disk (allocated blocks, links and directories included)."""
    total = 0
    for parent, dirs, files in os.walk(folder):
        for name in dirs + files:
            total += os.lstat(os.path.join(parent, name)).st_blocks * 512
    return total


def pool_rates(videos: int, clips: int, workers: int) -> None:
    """The pooled corpus written at `videos` and at a tenth of it: posts/s ratio (1.0 is linear)."""
    rates, walls = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (max(clips, videos // 10), videos):
            out = Path(tmp) / f"pool{n}"
            started = time.perf_counter()
            summary = generate(out, n, media_pool=clips, photo_share=0.1, workers=workers, progress=False)
            wall = time.perf_counter() - started
            walls[n] = wall
            rates[n] = n / (wall - summary.rendering_s)
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"pool {n:>9,} posts ({summary.pooled} pooled files): {wall:7.1f} s "
                f"(rendering {summary.rendering_s:.1f} s; the rest {rates[n]:,.0f} posts/s), "
                f"peak RSS so far {peak_mb:,.0f} MB, disk {_disk_bytes(out) / 2**20:,.0f} MiB"
            )
    low = max(clips, videos // 10)
    ratio = rates[videos] / rates[low]
    verdict = "met" if ratio >= 0.8 else "NOT met"
    print(f"posts/s outside rendering at {videos:,} / at {low:,}: {ratio:.2f} (aim >= 0.8: {verdict})")
    budget = POOL_BUDGET_S
    spent = walls[videos] / budget
    verdict = "met" if spent <= 1 else "NOT met"
    print(f"wall at {videos:,} / budget {budget / 60:.1f} min: {spent:.2f} (aim <= 1.0: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--plan", type=int, default=None, help="time plan_corpus at N and N/10 posts")
    parser.add_argument("--pool", type=int, default=None, help="time a pooled corpus of K clips at N, N/10")
    args = parser.parse_args()
    if args.plan:
        plan_rates(args.plan)
        return
    if args.pool:
        pool_rates(args.videos, args.pool, args.workers)
        return
    size, seconds = (144, 256), (args.seconds, args.seconds)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        summary = generate(
            root / "corpus", args.videos, size=size, seconds=seconds, workers=args.workers, progress=False
        )
        total_s = time.perf_counter() - started

        config = SynthConfig(videos=args.videos, width=size[0], height=size[1], seconds=seconds)
        jobs = plan_corpus(config, root / "corpus").jobs
        raw = root / "raw"
        raw.mkdir()
        tasks = [_prerender(job, raw) for job in jobs]  # untimed: the limit is the encode alone
        started = time.perf_counter()
        with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
            list(pool.map(_encode_only, tasks))
        encode_only_s = time.perf_counter() - started

    busy = summary.render_s + summary.encode_s
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}")
    print(f"videos: {args.videos} x {size[0]}x{size[1]}, {args.seconds:g} s, 15 fps; workers {args.workers}")
    print(f"total:        {total_s:6.2f} s  = {args.videos / total_s:.2f} videos/s")
    print(f"encode-only:  {encode_only_s:6.2f} s  = {args.videos / encode_only_s:.2f} videos/s")
    print(f"encode share of worker time: {summary.encode_s / busy:.0%}")
    ratio = total_s / encode_only_s
    print(f"total / encode-only: {ratio:.2f} (aim <= 2.0: {'met' if ratio <= 2.0 else 'NOT met'})")


if __name__ == "__main__":
    main()
