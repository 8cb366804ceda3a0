"""Per-video outputs (tkds.benchmarks.stats): every built-in task records them, the metrics recomputed from
them are the task's, plug-in tasks without them still run, and `tkds bench` turns them into intervals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.test_bench_tasks import make_table
from tests.test_tasks_scale import likes_table, small_blocks  # noqa: F401 - the fixture reused
from tests.test_tasks_scale import table as scale_table
from tkds.benchmarks import stats
from tkds.benchmarks.leaderboard import HEADLINE
from tkds.benchmarks.run import bench
from tkds.benchmarks.tasks import TASKS, run_tasks
from tkds.errors import TkdsError

REPO = Path(__file__).resolve().parents[1]


def recomputed(results, tmp_path: Path) -> dict[str, dict[str, float]]:
    """Each recorded metric recomputed by stats from the outputs file the bench would write."""
    path = tmp_path / "outputs.parquet"
    results.outputs.write_parquet(path)
    found: dict[str, dict[str, float]] = {}
    for task, metric in results.outputs.select("task", "metric").unique().iter_rows():
        outputs = stats.read_outputs([path], task, metric)
        found.setdefault(task, {})[metric] = stats.point(outputs, stats.metric_kind(metric))
    return found


def check_recomputed(results, tmp_path: Path) -> int:
    """Every built-in metric with a kind has outputs, and they give its value: exactly for a share of
    videos (an integer count over n), to the last bits of a sum taken in another order otherwise."""
    found = recomputed(results, tmp_path)
    expected = {
        task: {name: value for name, value in metrics.items() if stats.metric_kind(name)}
        for task, metrics in results.metrics.items()
        if task in TASKS  # a plug-in's 3-argument run records none
    }
    assert {t: set(m) for t, m in found.items()} == {t: set(m) for t, m in expected.items() if m}
    for task, metrics in expected.items():
        for name, value in metrics.items():
            if stats.metric_kind(name) == "accuracy" or name.startswith("R@"):
                assert found[task][name] == value, (task, name)
            else:
                assert found[task][name] == pytest.approx(value, rel=1e-12, abs=1e-15), (task, name)
    return sum(len(m) for m in expected.values())


@pytest.mark.parametrize("features", ["video", "audio-visual"])
def test_every_task_records_outputs_that_give_its_metrics(features: str, tmp_path: Path) -> None:
    table = make_table(separable=True)
    results = run_tasks(table, None, features, seed=0)
    assert set(results.metrics) == set(TASKS), results.skipped
    assert set(results.outputs["task"]) == set(TASKS)
    assert dict(results.outputs.schema) == stats.OUTPUT_COLUMNS
    assert check_recomputed(results, tmp_path) > 30
    outputs = results.outputs
    # The videos each metric is computed on: test videos, every video for originality.
    test_keys = set(table.filter(pl.col("split") == "test")["key"])
    author_disjoint = ~pl.col("metric").str.ends_with("_time")  # the time-forward split tests the newest
    for task in ("classification", "retrieval", "likes", "hashtags"):
        assert set(outputs.filter((pl.col("task") == task) & author_disjoint)["key"]) <= test_keys, task
    assert set(outputs.filter(pl.col("metric") == "linear_top1")["key"]) == test_keys
    assert set(outputs.filter(pl.col("metric") == "auroc_iforest")["key"]) == set(table["key"])
    # The truth is null exactly where the kind needs none.
    for (metric,), rows in outputs.group_by(["metric"]):
        assert rows["y_true"].null_count() == (rows.height if stats.metric_kind(metric) == "mean" else 0)


def test_blockwise_tasks_record_every_block(small_blocks: None, tmp_path: Path) -> None:  # noqa: F811
    """Queries split over many blocks, unknown labels, sounds and authors, and no key column (videos are
    named by row number)."""
    table = scale_table(1200)
    results = run_tasks(table, ["retrieval", "hashtags"], "video", seed=0)
    assert set(results.metrics) == {"retrieval", "hashtags"}
    assert check_recomputed(results, tmp_path) >= 10 + 18 - 6  # some rare/frequent subsets may be empty
    map_excl = results.outputs.filter(pl.col("metric") == "mAP_excl")
    assert 0 < map_excl.height <= results.outputs.filter(pl.col("metric") == "mAP").height


@pytest.mark.filterwarnings("ignore:Skipping features without any observed values")
def test_likes_outputs_give_both_splits_r2(tmp_path: Path) -> None:
    results = run_tasks(likes_table(900, 24), ["likes"], "video", seed=0)
    r2 = {m for m in results.metrics["likes"] if m.startswith("r2_")}
    assert r2 == {
        f"r2_{s}{t}" for s in ("author", "content", "combined", "pca_ridge", "pca_gbm") for t in ("", "_time")
    }
    check_recomputed(results, tmp_path)


class ThreeArguments:
    """A plug-in task whose run takes no `outputs`, as docs/plugins.md's protocol has it."""

    NAME, NEEDS = "three", ("label",)

    @staticmethod
    def skip_reason(table: pl.DataFrame) -> str | None:
        return None

    @staticmethod
    def run(table: pl.DataFrame, features: str, seed: int) -> dict[str, float]:
        return {"rows": float(table.height)}


class BadOutputs(ThreeArguments):
    """A plug-in that takes `outputs` and appends something else."""

    @staticmethod
    def run(table: pl.DataFrame, features: str, seed: int, outputs: list | None = None) -> dict[str, float]:
        outputs.append(pl.DataFrame({"key": ["v0"]}))
        return {"rows": float(table.height)}


def test_plug_in_tasks_run_with_or_without_outputs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.syspath_prepend(str(REPO / "examples"))
    table = make_table(separable=True)
    names = ["classification", "my_task:NearestLabel", f"{__name__}:ThreeArguments"]
    results = run_tasks(table, names, "video", seed=0)
    assert results.metrics[f"{__name__}:ThreeArguments"] == {"rows": 160.0}
    assert 0 <= results.metrics["my_task:NearestLabel"]["nn_top1"] <= 1
    assert set(results.outputs["task"]) == {"classification"}
    check_recomputed(results, tmp_path)
    only_plug_ins = run_tasks(table, names[1:], "video", seed=0)
    assert only_plug_ins.outputs is None and len(only_plug_ins.metrics) == 2
    with pytest.raises(TkdsError, match=r"task .*BadOutputs recorded outputs .*per_video.record"):
        run_tasks(table, [f"{__name__}:BadOutputs"], "video", seed=0)


def test_bench_leaderboard_has_intervals_and_paired_differences(built_shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    bench(built_shards, out, ("random", "metadata-only"), seeds=2, progress=False)
    for cell in ("random/seed0", "random/seed1", "metadata-only/seed0", "metadata-only/seed1"):
        outputs = pl.read_parquet(out / cell / stats.OUTPUTS_DIR / "video.parquet")
        assert dict(outputs.schema) == stats.OUTPUT_COLUMNS
        assert not list((out / cell / stats.OUTPUTS_DIR).glob("*.partial"))
        # Written before metrics.json, which marks the cell done.
        written = (out / cell / stats.OUTPUTS_DIR / "video.parquet").stat().st_mtime_ns
        assert written <= (out / cell / "metrics.json").stat().st_mtime_ns
    board = json.loads((out / "leaderboard.json").read_text())
    rows = [r for r in board["rows"] if r["method"] in ("random", "metadata-only")]
    assert {r["method"] for r in rows} == {"random", "metadata-only"}
    with_interval = 0
    for row in rows:
        for task, metric in HEADLINE.items():
            value = row["metrics"].get(task, {}).get(metric)
            if value is None or value.get("mean") is None:
                continue
            assert value["ci_seeds"] == 2 and value["ci_videos"] > 0, (row["method"], task)
            if value["ci"] is None:
                # On 5 test videos a resample can have a constant truth: no R² there, so no interval.
                assert stats.metric_kind(metric) in ("r2", "auroc"), (row["method"], task)
                continue
            low, high = value["ci"]
            assert np.isfinite([low, high]).all() and low <= high, (row["method"], task)
            with_interval += 1
    assert with_interval >= 8  # classification and hashtags in each of the 4 rows
    pairs = [pair for task_pairs in board["differences"].values() for pair in task_pairs]
    assert {"classification", "hashtags"} <= set(board["differences"]) and pairs
    for pair in pairs:
        assert pair["a"] != pair["b"]
        assert pair["low"] <= pair["high"] and isinstance(pair["significant"], bool)
    assert "Paired differences" in (out / "leaderboard.md").read_text()
    # An imported cell writes them too: random's seed-0 embeddings, imported, give that cell's outputs.
    copy = tmp_path / "random-seed0.parquet"
    shutil.copy(out / "random" / "seed0" / "embeddings.parquet", copy)
    bench(built_shards, out, ("random", "metadata-only"), seeds=2, progress=False, embeddings={"mine": copy})
    for features in ("video", "audio", "audio-visual"):
        own, imported = (
            pl.read_parquet(out / method / "seed0" / stats.OUTPUTS_DIR / f"{features}.parquet").sort(
                "task", "metric", "key"
            )
            for method in ("random", "mine")
        )
        assert own.height and own.equals(imported), features
    board = json.loads((out / "leaderboard.json").read_text())
    mine = [r for r in board["rows"] if r["method"] == "mine"]
    assert mine and all(r["metrics"]["classification"]["linear_top1"]["ci_seeds"] == 2 for r in mine)
