"""`tkds demo`: the embedded default, every stage on one machine: synth → twin → collect → shard → bench.

The collection is the twin's For You feed, which serves every video of the corpus.

Each stage reuses what an earlier run finished, so a re-run after Ctrl-C picks up where it stopped.
`report(stage, summary)` is called as each stage ends, so the CLI can print its summary at once.

At the end the demo records its headline figures in OUT/results.json (`RESULTS_FILE`): the plan, the
corpus, split and shard counts, the training steps each learned method ran, the stage times and the
headline metric of every leaderboard row. docs/results.md's demo section is generated from a committed
copy of such a file (`tkds.benchmarks.results_doc`), so the documented figures are a recorded run's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import tkds
from tkds.files import write_json
from tkds.synth import CORPUS_FILE

RESULTS_FILE = "results.json"
RESULTS_FORMAT = "tkds-demo-results"


@dataclass(frozen=True)
class DemoPlan:
    videos: int
    seconds: tuple[float, float]
    seeds: int
    # Author splits: a few hundred SynthTok videos come from a few dozen authors (one per 10 videos), and
    # the author-disjoint test split needs several of them for its likes R² to mean anything.
    ratios: tuple[float, float, float]
    methods: tuple[str, ...] = ("random", "simclr", "av-simclr", "metadata-only", "sound-id")
    preset: str = "cpu-tiny"


FULL = DemoPlan(videos=300, seconds=(5.0, 7.0), seeds=2, ratios=(0.6, 0.2, 0.2))
# A few minutes, what CI runs: 10 authors, so most go to train for it to fill a cpu-tiny batch.
TINY = DemoPlan(videos=96, seconds=(2.0, 2.0), seeds=2, ratios=(0.8, 0.1, 0.1))


@dataclass
class DemoResult:
    out: Path
    stage_s: dict[str, float] = field(default_factory=dict)  # synth, collect, shard, train, embed, tasks
    wall_s: float = 0.0
    results: Path | None = None  # OUT/results.json


def run_demo(
    out: str | Path,
    plan: DemoPlan = FULL,
    report: Callable[[str, object], None] = lambda stage, summary: None,
) -> DemoResult:
    from tkds.benchmarks.run import bench
    from tkds.collector.collect import collect
    from tkds.dataset.build import ShardParams, build_shards
    from tkds.synth import generate
    from tkds.twin import serve

    out = Path(out)
    result = DemoResult(out)
    corpus = out / "corpus"
    demo_started = started = time.perf_counter()
    if not (corpus / CORPUS_FILE).exists():
        report("synth", generate(corpus, plan.videos, seconds=plan.seconds, photo_share=0.1))
    result.stage_s["synth"] = time.perf_counter() - started

    started = time.perf_counter()
    db = out / "tk.duckdb"
    with serve(corpus, seed=0) as twin:
        summary = collect(
            db, trending=True, limit=plan.videos, media_dir=out / "media", rate=20.0,
            proxies=[twin.proxy_url], ca_cert=twin.ca_path,
        )  # fmt: skip
    report("collect", summary)
    result.stage_s["collect"] = time.perf_counter() - started

    started = time.perf_counter()
    shards = out / "shards"
    params = ShardParams(
        size=128, samples_per_shard=64, ratios=plan.ratios, labels=str((corpus / CORPUS_FILE).resolve())
    )
    report("shard", build_shards(db, shards, params))
    result.stage_s["shard"] = time.perf_counter() - started

    summary = bench(shards, out / "run", plan.methods, plan.preset, plan.seeds)
    report("bench", summary)
    result.stage_s.update(summary.stage_s)
    result.wall_s = time.perf_counter() - demo_started
    result.results = write_results(out, plan, result)
    return result


def write_results(out: Path, plan: DemoPlan, result: DemoResult) -> Path:
    """Record the run's headline figures in OUT/results.json, from the files its stages wrote."""
    from tkds.benchmarks.leaderboard import HEADLINE, row_label

    corpus = json.loads((out / "corpus" / CORPUS_FILE).read_text())
    manifest = json.loads((out / "shards" / "dataset.json").read_text())
    board = json.loads((out / "run" / "leaderboard.json").read_text())
    shards_per_split: dict[str, int] = {}
    for name in manifest["shards"]:
        split = name.split("/", 1)[0]
        shards_per_split[split] = shards_per_split.get(split, 0) + 1
    rows = [
        {
            "row": row_label(row),
            "headline": {
                f"{task}: {metric}": row["metrics"].get(task, {}).get(metric)
                for task, metric in HEADLINE.items()
            },
        }
        for row in board["rows"]
    ]
    record = {
        "format": RESULTS_FORMAT,
        "format_version": 1,
        "tkds_version": tkds.__version__,
        "date": datetime.now(UTC).date().isoformat(),
        "plan": asdict(plan),
        "corpus": {
            "posts": len(corpus["videos"]),
            "photo_posts": sum(1 for video in corpus["videos"] if video.get("kind") == "photo"),
            "authors": len(corpus["authors"]),
        },
        "samples": {split: manifest["counts"][split] for split in ("train", "val", "test")},
        "shards": shards_per_split,
        "training_steps": _training_steps(out / "run"),
        "wall_s": round(result.wall_s, 1),
        "stage_s": {stage: round(seconds, 1) for stage, seconds in result.stage_s.items()},
        "rows": rows,
    }
    path = out / RESULTS_FILE
    write_json(path, record, indent=1)
    return path


def _training_steps(run: Path) -> dict[str, int]:
    """Optimizer steps each trained method ran (seed 0), read from its train.jsonl."""
    steps = {}
    for log in sorted(run.glob("*/seed0/train.jsonl")):
        lines = log.read_text().splitlines()
        if lines:
            steps[log.parent.parent.name] = json.loads(lines[-1])["step"]
    return steps
