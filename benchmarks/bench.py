"""Wall time per stage of `tkds demo` (synth, collect, shard, train, embed, tasks), so the slowest shows.

Runs the demo into a fresh temporary folder and prints each stage's seconds and share, the total against
the 20-minute budget of the full demo, and which stage is the slowest.

    python benchmarks/bench.py [--tiny]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from tkds.benchmarks.demo import FULL, TINY, run_demo

BUDGET_S = 20 * 60


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="the CI version: 96 two-second videos")
    args = parser.parse_args()
    plan = TINY if args.tiny else FULL
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        result = run_demo(Path(folder) / "demo", plan)
    total = time.perf_counter() - started
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"demo: {plan.videos} videos, {plan.seconds[0]:.0f}-{plan.seconds[1]:.0f} s, {plan.preset}, "
          f"{', '.join(plan.methods)}, {plan.seeds} seeds")  # fmt: skip
    for stage, seconds in result.stage_s.items():
        print(f"  {stage:8} {seconds:7.1f} s  {seconds / total:5.1%}")
    slowest = max(result.stage_s, key=result.stage_s.get)
    print(f"total {total:.0f} s; budget / total {BUDGET_S / total:.2f} (aim >= 1); slowest stage: {slowest}")


if __name__ == "__main__":
    main()
