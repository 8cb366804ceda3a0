"""The downstream tasks on a synthetic embeddings table of N videos at the gpu-full width, against limits
measured in the same run:

time    each task's videos/s at N against the same task at N/10 (1.0 = linear in N; an exact search of
        test × train or all × all rows is quadratic in N, so it reads about 0.1 there), and the floor of
        that search: its similarity products alone at the float32 speed measured on one block here
        (floor / task near 1 = the task costs little beyond the products any exact search must do)
memory  each task's peak resident memory against a fixed budget (BUDGET_GIB, table included); aim >= 1

The table has what the tasks read: 20 labels with signal in the embedding, authors (author-disjoint
80/10/10 splits), reused sounds, 50 hashtags, likes log-linear in followers, create times, planted
outliers. Its last line is one JSON object keyed by task.

  python benchmarks/tasks.py [--videos 29000] [--dim 512] [--tasks classification,retrieval,...]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import threading
import time

import numpy as np
import polars as pl

from tkds.benchmarks.features import GALLERY_BLOCK, QUERY_BLOCK, in_split
from tkds.benchmarks.tasks import TASKS
from tkds.models.presets import PRESETS

BUDGET_GIB = 4.0
# gpu-full's video backbone and its feature width (tkds/models/encoders.py: r2plus1d_18 without its head).
BACKBONE, WIDTH = PRESETS["gpu-full"].video_backbone, 512
LABELS, GENERIC_TAGS, VIDEOS_PER_AUTHOR, VIDEOS_PER_SOUND = 20, 30, 20, 8


def synthetic_table(videos: int, dim: int, seed: int = 0) -> pl.DataFrame:
    """An embeddings table with the columns every task reads and planted structure in each."""
    rng = np.random.default_rng(seed)
    authors = max(8, videos // VIDEOS_PER_AUTHOR)
    author = rng.integers(0, authors, videos)
    author_split = np.array(["train"] * 8 + ["val", "test"])[rng.permutation(np.arange(authors) % 10)]
    home = rng.integers(0, LABELS, authors)
    label = np.where(rng.random(videos) < 0.7, home[author], rng.integers(0, LABELS, videos))
    centroids = rng.standard_normal((LABELS, dim), dtype=np.float32)
    spread = rng.uniform(0.5, 2.0, videos).astype(np.float32)
    video = centroids[label] * np.float32(0.15)
    video += rng.standard_normal((videos, dim), dtype=np.float32) * (spread[:, None] / np.sqrt(dim))
    outlier = rng.random(videos) < 0.01
    video[outlier] = rng.standard_normal((int(outlier.sum()), dim), dtype=np.float32)
    video /= np.linalg.norm(video, axis=1, keepdims=True)
    sounds = max(2, videos // VIDEOS_PER_SOUND)
    sound = (label + LABELS * rng.zipf(1.5, videos)) % sounds
    generic = np.minimum(rng.zipf(1.3, (videos, 2)) - 1, GENERIC_TAGS)  # GENERIC_TAGS = no second tag
    hashtags = [
        [f"cat{c}", *(f"tag{t}" for t in dict.fromkeys(pair) if t < GENERIC_TAGS)]
        for c, pair in zip(label.tolist(), generic.tolist(), strict=True)
    ]
    log_followers = rng.uniform(5, 13, authors)[author]
    created = rng.integers(1_600_000_000, 1_700_000_000, videos)
    likes = np.expm1(0.9 * log_followers + 0.3 * (label % 3) + rng.normal(0, 0.5, videos))
    return pl.DataFrame(
        {
            "key": [f"v{i}" for i in range(videos)],
            "split": author_split[author],
            "video": pl.Series(video).cast(pl.List(pl.Float32)),
            "label": [f"c{c}" for c in label.tolist()],
            "author_id": [f"a{a}" for a in author.tolist()],
            "music_id": [f"s{s}" for s in sound.tolist()],
            "likes": np.round(likes).astype(np.int64),
            "followers": np.round(np.exp(log_followers)).astype(np.int64),
            "author_hearts": rng.integers(100, 10**7, authors)[author],
            "author_videos": rng.integers(1, 500, authors)[author],
            "create_time": created,
            "age_days": rng.uniform(1, 400, videos),
            "hashtags": pl.Series(hashtags, dtype=pl.List(pl.String)),
            "originality": np.where(outlier, 1.0, spread / 2.0),
            "is_outlier": outlier,
        }
    )


def search_entries(table: pl.DataFrame, task: str) -> int:
    """Similarity entries the task's exact search computes (queries × gallery), 0 when it searches none."""
    train, test = in_split(table, "train"), in_split(table, "test")
    labelled = table["label"].is_not_null().to_numpy()
    tagged = (table["hashtags"].list.len() > 0).to_numpy()
    return {
        "classification": int((test & labelled).sum()) * int((train & labelled).sum()),
        "retrieval": int((test & labelled).sum()) * int((train & labelled).sum()),
        "originality": table.height**2,
        "hashtags": int((test & tagged).sum()) * int(train.sum()),
    }.get(task, 0)


def product_rate(dim: int) -> float:
    """Similarity entries per second of one float32 QUERY_BLOCK × GALLERY_BLOCK product on every core."""
    import torch

    rng = np.random.default_rng(1)
    queries = torch.from_numpy(rng.standard_normal((QUERY_BLOCK, dim), dtype=np.float32))
    gallery = torch.from_numpy(rng.standard_normal((GALLERY_BLOCK, dim), dtype=np.float32))
    queries @ gallery.T  # warm-up
    started = time.perf_counter()
    for _ in range(5):
        queries @ gallery.T
    return 5 * QUERY_BLOCK * GALLERY_BLOCK / (time.perf_counter() - started)


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """The highest resident memory seen, sampled every 10 ms while the block runs."""

    def __enter__(self) -> PeakMemory:
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed memory back, so the peak is this block's
        self.peak = resident_bytes()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(0.01):
            self.peak = max(self.peak, resident_bytes())

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, resident_bytes())


def time_task(table: pl.DataFrame, name: str) -> dict:
    """Wall and CPU seconds, peak resident bytes and metrics of task `name` on `table`."""
    with PeakMemory() as memory:
        started, cpu = time.perf_counter(), time.process_time()
        metrics = TASKS[name].run(table, "video", 0)
        seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    return {"seconds": seconds, "cpu_s": cpu_s, "peak_rss": memory.peak, "metrics": metrics}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=29_000)
    parser.add_argument(
        "--dim", type=int, default=WIDTH, help=f"embedding width; gpu-full's {BACKBONE}: {WIDTH}"
    )
    parser.add_argument("--tasks", default=",".join(TASKS))
    args = parser.parse_args()
    names = args.tasks.split(",")
    rate = product_rate(args.dim)
    tenth = synthetic_table(args.videos // 10, args.dim, seed=1)
    started = time.perf_counter()
    table = synthetic_table(args.videos, args.dim)
    build_s = time.perf_counter() - started
    table_rss = resident_bytes()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f}; float32 products {rate * 2 * args.dim / 1e9:.0f} GFLOP/s")  # fmt: skip
    print(f"table: {args.videos:,} videos x {args.dim} (built in {build_s:.1f} s, resident "
          f"{table_rss / 2**30:.2f} GiB); budget {BUDGET_GIB:.1f} GiB peak resident per task")  # fmt: skip
    print(f"{'task':15} {'s':>8} {'cpu s':>8} {'videos/s':>9} {'vs N/10':>8} {'floor s':>8} "
          f"{'floor/task':>10} {'peak GiB':>9} {'budget/peak':>11}", flush=True)  # fmt: skip
    figures = {}
    for name in names:
        small, large = time_task(tenth, name), time_task(table, name)
        seconds, peak = large["seconds"], large["peak_rss"]
        per_s = args.videos / seconds
        # CPU seconds, not wall: on a shared machine the wall clock also counts other processes' turns.
        linear = (args.videos / large["cpu_s"]) / (tenth.height / small["cpu_s"])
        floor_s = search_entries(table, name) / rate
        figures[name] = {
            "seconds": round(seconds, 2),
            "cpu_s": round(large["cpu_s"], 2),
            "videos_per_s": round(per_s, 1),
            "ratio_vs_tenth": round(linear, 3),
            "search_floor_s": round(floor_s, 2),
            "floor_over_task": round(floor_s / seconds, 3) if floor_s else None,
            "peak_rss_gib": round(peak / 2**30, 3),
            "budget_over_peak": round(BUDGET_GIB * 2**30 / peak, 2),
            "metrics": {key: round(value, 4) for key, value in large["metrics"].items()},
        }
        floor = f"{floor_s:8.1f} {floor_s / seconds:10.2f}" if floor_s else f"{'-':>8} {'-':>10}"
        print(f"{name:15} {seconds:8.1f} {large['cpu_s']:8.1f} {per_s:9.0f} {linear:8.2f} {floor} "
              f"{peak / 2**30:9.2f} {BUDGET_GIB * 2**30 / peak:11.2f}", flush=True)  # fmt: skip
    print(json.dumps({"videos": args.videos, "dim": args.dim, "tasks": figures}))


if __name__ == "__main__":
    main()
