"""The media stage's CPU per video outside the download itself, against issue 13's limit of 30 ms:

stage       what the collector does with each file a download leaves in MEDIA/.partial: `inspect` (probe,
            sha256, rename into place) and `Store.record_media` (DuckDB); aim ratio <= 1.0
probe       the probe alone: in this process with PyAV (today's `probe`) next to a new ffprobe process
            per file (`ffprobe -v error -count_packets -show_streams -show_format -of json`, the collector's
            probe before issue 13), over the same files in the same run, so contention cancels in the
            speed-up; the stage is measured with each
sha256      the hash alone
record      `Store.record_media` alone (the media row and its crawl target: three statements), as the
            stage makes them

CPU is this process's user + system time (all its threads: DuckDB's too) plus that of the ffprobe
processes it waited for. The files are small SynthTok mp4s: the probe's cost is per file (opening,
FFmpeg's stream info), then per packet, so a longer clip adds the packets it holds. The last line is one
JSON object with the figures.

  python benchmarks/media.py [--videos 200] [--corpus DIR]   (DIR: a `tkds synth` folder; else one is made)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tkds.collector import media
from tkds.collector.store import Store
from tkds.files import file_sha256

LIMIT_MS = 30.0  # issue 13: the media stage's CPU per video outside the download


def ffprobe_process(path: Path) -> dict:
    """The collector's probe before issue 13: a new ffprobe process per file."""
    command = ["ffprobe", "-v", "error", "-count_packets", "-show_streams", "-show_format", "-of", "json"]
    result = subprocess.run([*command, str(path)], capture_output=True, text=True)
    if result.returncode != 0 or result.stderr.strip():
        raise ValueError((result.stderr.strip().splitlines() or ["ffprobe failed"])[-1])
    return json.loads(result.stdout)


def cpu_s() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def per_video_ms(items: list, work: Callable[[Any], object]) -> dict[str, float]:
    """CPU and wall milliseconds per item of `work`."""
    cpu, wall = cpu_s(), time.perf_counter()
    for item in items:
        work(item)
    return {
        "cpu_ms": (cpu_s() - cpu) * 1000 / len(items),
        "wall_ms": (time.perf_counter() - wall) * 1000 / len(items),
    }


def stage_ms(sources: list[Path], folder: Path, probe: Callable[[Path], dict]) -> dict[str, float]:
    """`inspect` + `Store.record_media` for each source, with `probe` as the collector's probe: the files
    are copied into MEDIA/.partial first (untimed), as downloads leave them."""
    media_dir = folder / "media"
    partial_dir = media.private_partial_dir(media_dir)
    partials = {}
    for number, source in enumerate(sources):
        video_id = str(7_400_000_000_000_000_000 + number)
        partials[video_id] = partial_dir / f"{video_id}.direct.mp4"
        shutil.copyfile(source, partials[video_id])
    with Store.open(folder / "tk.duckdb") as store:
        store.record_media(media.MediaResult("7399999999999999999", "failed", "warm-up"))
        kept, media.probe = media.probe, probe  # `inspect` calls the module's probe
        try:
            figures = per_video_ms(
                list(partials),
                lambda video_id: store.record_media(
                    media.inspect(video_id, partials[video_id], media_dir / f"{video_id}.mp4")
                ),
            )
        finally:
            media.probe = kept
        ok = store.db.execute("SELECT count(*) FROM media WHERE status = 'ok'").fetchone()[0]
    if ok != len(sources):
        raise SystemExit(f"only {ok} of {len(sources)} files probed as whole video")
    return figures


def record_ms(files: list[Path], folder: Path) -> dict[str, float]:
    """`Store.record_media` per video of results like the stage's (probed once, untimed)."""
    facts = media.inspect("7399999999999999999", files[0], files[0]).__dict__
    results = [
        media.MediaResult(**{**facts, "video_id": str(7_400_000_000_000_000_000 + number), "path": str(path)})
        for number, path in enumerate(files)
    ]
    with Store.open(folder / "tk.duckdb") as store:
        store.record_media(media.MediaResult("7399999999999999999", "failed", "warm-up"))
        return per_video_ms(results, store.record_media)


def synth_videos(corpus: Path | None, videos: int, scratch: Path) -> list[Path]:
    if corpus is None:
        corpus = scratch / "corpus"
        command = [sys.executable, "-m", "tkds", "synth", str(corpus), "--videos", str(videos)]
        subprocess.run([*command, "--size", "144x256"], check=True, capture_output=True)
    files = sorted((corpus / "media").glob("*.mp4"))
    if not files:
        raise SystemExit(f"no mp4 files in {corpus / 'media'}; make them with tkds synth")
    return [files[i % len(files)] for i in range(videos)]  # photo posts have none: reuse to reach N


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--corpus", type=Path, help="a `tkds synth` folder (default: make one of --videos)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tkds-bench-media-") as scratch:
        files = synth_videos(args.corpus, args.videos, Path(scratch))
        media.probe(files[0]), ffprobe_process(files[0])  # warm-up: PyAV's libraries, ffprobe's page cache
        probe = {"ffprobe": per_video_ms(files, ffprobe_process), "pyav": per_video_ms(files, media.probe)}
        sha256 = per_video_ms(files, file_sha256)
        record = record_ms(files, Path(scratch) / "record")
        stage = {
            "ffprobe": stage_ms(files, Path(scratch) / "ffprobe", ffprobe_process),
            "pyav": stage_ms(files, Path(scratch) / "pyav", media.probe),
        }
    load, cores = os.getloadavg()[0], os.cpu_count()
    mean_kb = sum(p.stat().st_size for p in set(files)) / len(set(files)) / 1024 if args.corpus else None
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores, load {load:.1f}")
    size = f", {mean_kb:.0f} KB mean" if mean_kb else ""
    print(f"videos: {len(files)} SynthTok mp4s (144x256{size}); per video, CPU ms (wall ms)")
    print(f"{'':10} {'ffprobe process':>20} {'in-process (PyAV)':>20}")

    def row(name: str, figures: dict[str, dict[str, float]]) -> None:
        cells = [f"{f['cpu_ms']:8.2f} ({f['wall_ms']:7.2f})" for f in (figures["ffprobe"], figures["pyav"])]
        print(f"{name:10} {cells[0]:>20} {cells[1]:>20}")

    row("probe", probe)
    row("sha256", {"ffprobe": sha256, "pyav": sha256})
    row("record", {"ffprobe": record, "pyav": record})
    row("stage", stage)
    ratio = {name: figures["cpu_ms"] / LIMIT_MS for name, figures in stage.items()}
    speedup = stage["ffprobe"]["cpu_ms"] / stage["pyav"]["cpu_ms"]
    limit = f"(stage CPU / {LIMIT_MS:.0f} ms; aim <= 1.0)"
    print(f"{'ratio':10} {ratio['ffprobe']:20.2f} {ratio['pyav']:20.2f}   {limit}")
    print(f"speed-up   {speedup:.1f}x less CPU per video in-process, both measured in this run")
    figures = {
        "videos": len(files), "limit_ms": LIMIT_MS, "probe": probe, "sha256": sha256, "record": record,
        "stage": stage,
        "ratio": ratio, "speedup": speedup, "load": load, "cores": cores,
    }  # fmt: skip
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
