"""`tkds demo`: the embedded default, every stage on one machine: synth → twin → collect → shard → bench.

The collection is the twin's For You feed, which serves every video of the corpus.

Each stage reuses what an earlier run finished, so a re-run after Ctrl-C picks up where it stopped.
`report(stage, summary)` is called as each stage ends, so the CLI can print its summary at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tkds.synth import CORPUS_FILE


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
    started = time.perf_counter()
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
    return result
