"""Ray's fixed costs for `--engine ray`, against the local engine in the same run (contention cancels).

    nice -n 19 .venv/bin/python benchmarks/ray_engine.py --videos 12 --tasks 200

Prints: Ray start-up (a local `ray.init`), the scheduling cost per task (no-op tasks through the same
`map` the shard stage uses, local threads as the baseline), and `tkds shard` of a SynthTok corpus on
both engines with the ratio of their wall times and whether their shard sha256s match.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tkds.collector.importer import import_captures
from tkds.dataset.build import ShardParams, build_shards
from tkds.engines import LocalEngine, RayEngine
from tkds.synth import generate


def noop(item: int) -> int:
    return item


def per_task_s(engine: LocalEngine | RayEngine, tasks: int, workers: int) -> float:
    started = time.perf_counter()
    for _ in engine.map(noop, range(tasks), ahead=4 * workers):
        pass
    return (time.perf_counter() - started) / tasks


def digests(out: Path) -> dict[str, str]:
    return {url: e["sha256"] for url, e in json.loads((out / "dataset.json").read_text())["shards"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tkds-ray-bench-") as scratch:
        root = Path(scratch)
        generate(root / "corpus", args.videos, seed=7, seconds=(2.0, 3.0), progress=False)
        db = root / "tk.duckdb"
        import_captures(
            db, sorted((root / "corpus" / "items").glob("*.json")), root / "corpus" / "media", False
        )
        params = ShardParams(samples_per_shard=4, size=128)

        local_task = per_task_s(LocalEngine(args.workers), args.tasks, args.workers)
        started = time.perf_counter()
        ray = RayEngine(args.workers)
        startup = time.perf_counter() - started
        per_task_s(ray, 20, args.workers)  # the first tasks start Ray's worker processes
        ray_task = per_task_s(ray, args.tasks, args.workers)
        ray.close()

        local = build_shards(db, root / "local", params, workers=args.workers, progress=False)
        remote = build_shards(db, root / "ray", params, workers=args.workers, progress=False, engine="ray")
        print(f"ray start-up (ray.init num_cpus={args.workers}): {startup:.1f} s")
        print(f"per task: local {local_task * 1e3:.3f} ms, ray {ray_task * 1e3:.2f} ms "
              f"(ratio {ray_task / local_task:.0f}x, {args.tasks} no-op tasks)")  # fmt: skip
        same = digests(root / "ray") == digests(root / "local")
        print(f"shard {args.videos} videos: local {local.wall_s:.1f} s, ray {remote.wall_s:.1f} s "
              f"(of which start-up {remote.steps.get('engine_startup', 0):.1f} s), "
              f"ratio {remote.wall_s / local.wall_s:.2f}; same sha256s: {same}")  # fmt: skip


if __name__ == "__main__":
    main()
