"""`tkds serve` latency: `POST /api/predict` of one 15 s SynthTok video against a live server, on CPU.

Starts `tkds serve` as its own process, as a user runs it, then sends the same upload `--requests`
times, one after another, after two warm-up requests. Prints p50 and p95 of the client's total time
and of the server's own split (decode, embed, predict, from the response's timings); "http" is the
rest: upload, form parsing, JSON. Aim: p95 of the total under 2 s on 2 cores.

Without --run it builds a run as the tests do: a SynthTok corpus of `--videos`, shards, and
`tkds bench` with `random` (no training) and `metadata-only`, preset cpu-tiny.

    python benchmarks/serve.py [--run RUN] [--videos 48] [--seconds 15] [--requests 30]
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx
import numpy as np

from tkds.benchmarks.run import bench
from tkds.collector.importer import import_captures
from tkds.dataset.build import ShardParams, build_shards
from tkds.synth import generate


def build_run(root: Path, videos: int) -> Path:
    """A small bench run like the tests' fixture: SynthTok → DuckDB → shards → bench random."""
    corpus = root / "corpus"
    generate(corpus, videos, seed=3, seconds=(2.0, 3.0), progress=False)
    db = root / "tk.duckdb"
    import_captures(db, sorted((corpus / "items").glob("*.json")), corpus / "media", progress=False)
    params = ShardParams(
        samples_per_shard=16, size=128, labels=str(corpus / "corpus.json"), ratios=(0.6, 0.2, 0.2)
    )
    build_shards(db, root / "shards", params, progress=False)
    bench(
        root / "shards", root / "run", ("random", "metadata-only"), preset="cpu-tiny", seeds=1, progress=False
    )
    return root / "run"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, default=None, help="A bench run; default: build a small one.")
    parser.add_argument("--videos", type=int, default=48, help="Corpus size of the run built without --run.")
    parser.add_argument("--seconds", type=float, default=15.0, help="Length of the uploaded video.")
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        run = args.run or build_run(root, args.videos)
        with warnings.catch_warnings():  # a one-video corpus card has no likes variance for its R²
            warnings.simplefilter("ignore", RuntimeWarning)
            generate(root / "upload", 1, seed=99, seconds=(args.seconds, args.seconds), progress=False)
        video = next((root / "upload" / "media").glob("*.mp4"))
        data = video.read_bytes()

        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "tkds", "serve", "--run", str(run), "--port", str(port)],
            stdout=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, timeout=60) as client:
                deadline = time.monotonic() + 120
                while True:
                    try:
                        health = client.get("/healthz").json()
                        break
                    except httpx.TransportError:
                        if server.poll() is not None or time.monotonic() > deadline:
                            raise SystemExit("tkds serve did not start") from None
                        time.sleep(0.2)
                rows = []
                for i in range(args.requests + 2):
                    started = time.perf_counter()
                    response = client.post(
                        "/api/predict",
                        files={"file": (video.name, data, "video/mp4")},
                        data={"followers": "1000"},
                    )
                    total = (time.perf_counter() - started) * 1e3
                    response.raise_for_status()
                    if i >= 2:  # two warm-up requests
                        timings = response.json()["timings"]
                        stages = [timings["decode_ms"], timings["embed_ms"], timings["predict_ms"]]
                        rows.append([total, *stages, total - sum(stages)])
        finally:
            server.terminate()
            server.wait(timeout=30)

    times = np.array(rows)
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {os.cpu_count()} cores; server: tkds serve, {health['method']}, "
          f"{health['videos']} corpus videos")  # fmt: skip
    print(f"upload: one SynthTok video, {args.seconds:.0f} s, 144x256, {len(data) / 1e6:.2f} MB; "
          f"{args.requests} requests after 2 warm-up")  # fmt: skip
    print(f"{'ms':>8} {'total':>8} {'decode':>8} {'embed':>8} {'predict':>8} {'http':>8}")
    for q in (50, 95):
        print(f"{'p' + str(q):>8} " + " ".join(f"{v:8.0f}" for v in np.percentile(times, q, axis=0)))
    p95 = np.percentile(times[:, 0], 95)
    print(f"p95 total {p95 / 1e3:.2f} s (aim < 2 s): {'met' if p95 < 2000 else 'missed'}")


if __name__ == "__main__":
    main()
