"""The likes task's PCA read-outs (issue 17): PCA of the embedding to k dimensions chosen on validation,
beside the author statistics, into ridge and gradient-boosted trees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.test_task_outputs import recomputed
from tkds.benchmarks import features, stats
from tkds.benchmarks.glossary import HIGHER, describe
from tkds.benchmarks.tasks import likes, run_tasks

NEW = {f"r2_pca_{model}{split}" for model in ("ridge", "gbm") for split in ("", "_time")}


def planted(
    seed: int = 0, dims: int = 2, width: int = 256, splits: tuple[int, int, int] = (260, 120, 200)
) -> pl.DataFrame:
    """Likes from followers and a `dims`-dimensional signal that dominates the variance of a wide
    embedding whose other directions are noise; about as many train videos as embedding columns."""
    rng = np.random.default_rng(seed)
    rows = sum(splits)
    basis = np.linalg.qr(rng.normal(size=(width, width)))[0]
    signal = rng.normal(size=(rows, dims)) * 3.0
    x = signal @ basis[:, :dims].T + rng.normal(size=(rows, width)) @ basis.T * 1.0
    followers = np.round(np.exp(rng.uniform(5, 13, rows)))
    log_likes = (
        12
        + 0.5 * np.log1p(followers)
        + 1.2 * signal[:, 0]
        + 1.5 * np.abs(signal[:, 1])
        + 0.4 * signal[:, 2:].sum(axis=1)
        + rng.normal(0, 0.5, rows)
    )
    return pl.DataFrame(
        {
            "key": [f"v{i}" for i in range(rows)],
            "split": np.repeat(["train", "val", "test"], splits),
            "video": pl.Series(x.astype(np.float32)).cast(pl.List(pl.Float32)),
            "author_id": [f"a{i}" for i in range(rows)],
            "likes": np.round(np.expm1(log_likes)).astype(np.int64),
            "followers": followers.astype(np.int64),
            "create_time": rng.permutation(rows) + 1_600_000_000,
        }
    )


def test_pca_read_outs_beat_ridge_on_a_planted_low_dimensional_signal() -> None:
    """Ridge on all 256 columns overfits 260 train videos; PCA to a few dimensions does not, and the trees
    also read the |signal| term no linear read-out can."""
    result = likes.run(planted(), "video", 0)
    assert set(result) >= NEW
    for suffix in ("", "_time"):
        full = max(result[f"r2_content{suffix}"], result[f"r2_combined{suffix}"])
        assert result[f"r2_pca_gbm{suffix}"] > full + 0.1, (suffix, result)
    assert result["r2_pca_ridge"] > result["r2_combined"] + 0.03, result


def masks(table: pl.DataFrame) -> tuple[np.ndarray, ...]:
    return tuple(features.in_split(table, split) for split in ("train", "val", "test"))


def test_k_is_chosen_on_validation_not_test() -> None:
    """Scrambling the test videos' likes changes neither the chosen k nor any prediction; without
    validation rows k is the smallest of the grid. Six signal dimensions: k = 2 is not enough."""
    table = planted(dims=6)
    content, author = features.embedding(table, "video"), features.metadata_features(table)
    y = np.log1p(table["likes"].to_numpy().astype(float))
    train, val, test = masks(table)
    fits = likes.pca_readouts(author, content, y, train, val, test, 0)
    scrambled = y.copy()
    scrambled[test] = np.random.default_rng(1).permutation(y[test])
    again = likes.pca_readouts(author, content, scrambled, train, val, test, 0)
    for model in ("ridge", "gbm"):
        assert fits[model].k == again[model].k
        assert np.array_equal(fits[model].predicted, again[model].predicted)
    assert {fit.k for fit in fits.values()} != {likes.PCA_GRID[0]}, "the choice is exercised"
    unvalidated = likes.pca_readouts(author, content, y, train, np.zeros_like(val), test, 0)
    assert {fit.k for fit in unvalidated.values()} == {likes.PCA_GRID[0]}


def test_outputs_recompute_the_pca_metrics(tmp_path: Path) -> None:
    results = run_tasks(planted(), ["likes"], "video", 0)
    found = recomputed(results, tmp_path)["likes"]
    for metric in NEW:
        assert stats.metric_kind(metric) == "r2"
        assert found[metric] == pytest.approx(results.metrics["likes"][metric], rel=1e-12, abs=1e-12)


def test_the_glossary_describes_the_pca_metrics() -> None:
    for metric in NEW:
        meaning = describe("likes", metric)
        assert meaning.direction == HIGHER and "PCA" in meaning.text, metric
    assert "time-forward" in describe("likes", "r2_pca_gbm_time").text
