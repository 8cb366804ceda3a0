"""SynthTok generation speed against its limit: encoding the very same frames and audio.

Both are measured in this run, on this machine, with the same worker count:
  total        `tkds.synth.generate` end to end (plan, render, encode, item JSON, corpus.json)
  encode-only  the same frames and soundtracks, rendered beforehand, only encoded
Prints videos/s, the share of worker time spent in the H.264/AAC encode, and total / encode-only
(aim: at most 2.0).

    python benchmarks/synth.py [--videos 40] [--workers 2] [--seconds 6]
"""

from __future__ import annotations

import argparse
import os
import platform
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
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
