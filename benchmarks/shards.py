"""Shard writing against its limits, both measured in this run on the same files and worker count:

transcode   `build_shards(size=S)` end to end (probe, one ffmpeg per video writing mp4 + flac + jpg +
            hash frames, dedupe, split, tar, stats, index, card) in videos/s, next to the same
            ffmpeg H.264/AAC transcode alone (mp4 output only) over the same files; aim >= 0.9
size 0      `build_shards(size=0)` (the files as collected) in MB/s, next to `tar cf` of the same
            files; aim >= 0.5

  python benchmarks/shards.py [--videos 40] [--seconds 6] [--size 256] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imageio_ffmpeg

from tkds.collector.importer import import_captures
from tkds.dataset.build import ShardParams, build_shards
from tkds.dataset.transcode import output_size
from tkds.synth import generate


def transcode_alone(source: Path, target: Path, size: int, fps: float) -> None:
    """The reference: the builder's video and audio encode settings, and nothing else."""
    width, height = output_size(144, 256, size)  # SynthTok's default frame
    keyframe = str(round(fps))
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-i", str(source),
            "-vf", f"fps={fps},scale={width}:{height}:flags=bicubic,format=yuv420p",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-threads", "1",
            "-g", keyframe, "-keyint_min", keyframe, "-sc_threshold", "0",
            "-af", "aresample=16000,pan=mono|c0=c0", "-c:a", "aac", "-b:a", "48k", str(target),
        ],
        check=True,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        corpus = root / "corpus"
        generate(corpus, args.videos, seed=1, seconds=(args.seconds, args.seconds), progress=False)
        db = root / "tk.duckdb"
        import_captures(db, sorted((corpus / "items").glob("*.json")), corpus / "media", progress=False)
        files = sorted((corpus / "media").glob("*.mp4"))
        megabytes = sum(f.stat().st_size for f in files) / 1e6

        started = time.perf_counter()
        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(lambda f: transcode_alone(f, root / f"alone-{f.name}", args.size, args.fps), files))
        alone_s = time.perf_counter() - started

        started = time.perf_counter()
        params = ShardParams(size=args.size, fps=args.fps, samples_per_shard=64)
        summary = build_shards(db, root / "shards", params, args.workers, progress=False)
        build_s = time.perf_counter() - started

        started = time.perf_counter()
        subprocess.run(["tar", "cf", str(root / "plain.tar"), "-C", str(corpus / "media"), "."], check=True)
        tar_s = time.perf_counter() - started

        started = time.perf_counter()
        build_shards(db, root / "passthrough", ShardParams(size=0), workers=args.workers, progress=False)
        passthrough_s = time.perf_counter() - started

    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {os.cpu_count()} cores, {args.workers} workers")
    print(f"corpus: {args.videos} SynthTok videos x {args.seconds:.0f} s, 144x256, {megabytes:.1f} MB")
    transcode_rate, alone_rate = summary.prepared / build_s, args.videos / alone_s
    print(f"transcode  build_shards {transcode_rate:6.2f} videos/s | ffmpeg alone {alone_rate:6.2f} videos/s"
          f" | ratio {transcode_rate / alone_rate:.2f} (aim >= 0.9)")  # fmt: skip
    passthrough_rate, tar_rate = megabytes / passthrough_s, megabytes / tar_s
    print(f"size 0     build_shards {passthrough_rate:6.1f} MB/s | tar cf {tar_rate:6.1f} MB/s"
          f" | ratio {tar_s / passthrough_s:.2f} (aim >= 0.5)")  # fmt: skip


if __name__ == "__main__":
    main()
