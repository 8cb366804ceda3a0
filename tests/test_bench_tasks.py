"""The downstream tasks on small synthetic embeddings tables with planted structure."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from tkds.benchmarks import features
from tkds.benchmarks.tasks import TASKS, classification, hashtags, likes, originality, retrieval, run_tasks
from tkds.errors import TkdsError

SCHEMA = {
    "key": pl.String,
    "split": pl.String,
    "video": pl.List(pl.Float32),
    "audio": pl.List(pl.Float32),
    "label": pl.String,
    "author_id": pl.String,
    "music_id": pl.String,
    "likes": pl.Int64,
    "followers": pl.Int64,
    "author_hearts": pl.Int64,
    "author_videos": pl.Int64,
    "create_time": pl.Int64,
    "hashtags": pl.List(pl.String),
    "originality": pl.Float64,
    "is_outlier": pl.Boolean,
}
CLASSES, AUTHORS, PER_AUTHOR, DIM, OUTLIERS = 4, 32, 5, 16, 8


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def make_table(separable: bool = True, seed: int = 0) -> pl.DataFrame:
    """160 videos by 32 authors, author-disjoint splits (20 / 4 / 8 authors), 4 classes, 8 planted outliers.

    separable: each video sits near its class centroid, as far from it as its ground-truth originality
    (0.05–0.25 per dimension); otherwise embeddings are pure noise. Outliers point anywhere.
    log1p(likes) = 0.9 · log(followers) + N(0, 0.3), so author statistics predict likes.
    """
    rng = np.random.default_rng(seed)
    n = AUTHORS * PER_AUTHOR
    author = np.repeat(np.arange(AUTHORS), PER_AUTHOR)
    split = np.array(["train"] * 5 + ["val"] + ["test"] * 2)[author % 8]
    label = rng.integers(0, CLASSES, n)
    centroids = _unit(rng.normal(size=(CLASSES, DIM)))
    spread = rng.uniform(0.05, 0.25, n)
    noise = rng.normal(size=(n, DIM))
    video = centroids[label] + spread[:, None] * noise if separable else noise
    # Every 20th video points in a random direction: far from every cluster.
    outlier = np.arange(n) % (n // OUTLIERS) == 7
    video[outlier] = rng.normal(size=(OUTLIERS, DIM))
    log_followers = rng.uniform(5, 13, AUTHORS)[author]
    rows = {
        "key": [f"v{i}" for i in range(n)],
        "split": split.tolist(),
        "video": _unit(video).tolist(),
        "audio": _unit(rng.normal(size=(n, 8))).tolist(),
        "label": [f"c{c}" for c in label],
        "author_id": [f"a{a}" for a in author],
        "music_id": [f"s{s}" for s in rng.integers(0, 12, n)],
        "likes": np.round(np.expm1(0.9 * log_followers + rng.normal(0, 0.3, n))).astype(int).tolist(),
        "followers": np.round(np.exp(log_followers)).astype(int).tolist(),
        "author_hearts": rng.integers(100, 10_000, n).tolist(),
        "author_videos": rng.integers(1, 500, n).tolist(),
        "create_time": rng.integers(1_600_000_000, 1_700_000_000, n).tolist(),
        "hashtags": [[f"cls{c}", *(["fyp"] if rng.random() < 0.5 else [])] for c in label],
        "originality": np.where(outlier, 1.0, spread),
        "is_outlier": outlier.tolist(),
    }
    return pl.DataFrame(rows, schema=SCHEMA)


@pytest.fixture(scope="module")
def separable() -> pl.DataFrame:
    return make_table(separable=True)


@pytest.fixture(scope="module")
def noise() -> pl.DataFrame:
    return make_table(separable=False)


@pytest.fixture(scope="module")
def separable_originality(separable: pl.DataFrame) -> dict[str, float]:
    return originality.run(separable, "video", seed=0)


def test_classification_separates_planted_classes(separable: pl.DataFrame) -> None:
    result = classification.run(separable, "video", seed=0)
    assert set(result) == {"linear_top1", "linear_macro_f1", "knn_top1", "knn_macro_f1"}
    # Test has 40 videos, 2 of them outliers that carry no class signal.
    assert result["linear_top1"] >= 0.9
    assert result["knn_top1"] >= 0.9
    assert result["knn_macro_f1"] >= 0.85


def test_classification_on_noise_is_near_chance(noise: pl.DataFrame) -> None:
    result = classification.run(noise, "video", seed=0)
    # Chance is 1/4; with 40 test videos two standard errors are about 0.14.
    assert result["linear_top1"] < 0.45
    assert result["knn_top1"] < 0.45


def test_retrieval_finds_the_class(separable: pl.DataFrame, noise: pl.DataFrame) -> None:
    good, bad = retrieval.run(separable, "video", 0), retrieval.run(noise, "video", 0)
    assert {"R@1", "R@5", "R@10", "R@20", "mAP", "R@1_excl", "mAP_excl"} <= set(good)
    assert good["R@1"] >= 0.9
    assert good["mAP"] > bad["mAP"] + 0.3
    assert good["R@1"] <= good["R@5"] <= good["R@10"] <= good["R@20"]


def _retrieval_table(rows: list[tuple[str, str, str, str, list[float]]]) -> pl.DataFrame:
    """A table from (split, label, music_id, author_id, vector) rows; other columns empty."""
    return pl.DataFrame(
        {
            "key": [f"v{i}" for i in range(len(rows))],
            "split": [r[0] for r in rows],
            "label": [r[1] for r in rows],
            "music_id": [r[2] for r in rows],
            "author_id": [r[3] for r in rows],
            "video": _unit(np.array([r[4] for r in rows], dtype=float)).tolist(),
        },
        schema_overrides={"video": pl.List(pl.Float32)},
    )


def test_retrieval_excludes_same_sound_and_same_author_matches() -> None:
    table = _retrieval_table(
        [
            ("train", "A", "m1", "a", [1, 0, 0, 0]),
            ("train", "A", "m2", "b", [0, 1, 0, 0]),
            ("train", "B", "m3", "c", [0, 0, 1, 0]),
            ("train", "B", "m4", "d", [0, 0, 0, 1]),
            # Ranks g0 A, g2 B, g1 A, g3 B; shares the sound m1 with g0.
            ("test", "A", "m1", "x", [3, 1, 2, 0]),
            # Ranks g2 B, g0 A, g3 B, g1 A; shares the author c with g2.
            ("test", "B", "m9", "c", [2, 0, 3, 1]),
            # Ranks g1 A, then ties g0 A, g2 B, g3 B in gallery order; shares nothing.
            ("test", "A", "m7", "y", [0, 1, 0, 0]),
        ]
    )
    result = retrieval.run(table, "video", 0)
    # All pairs: every query has a relevant item at rank 1. APs: (1 + 2/3)/2, (1 + 2/3)/2, (1 + 1)/2.
    assert result["R@1"] == pytest.approx(1.0)
    assert result["mAP"] == pytest.approx((5 / 6 + 5 / 6 + 1) / 3)
    # Excluded: query 0 ranks g2 B, g1 A, g3 B; query 1 ranks g0 A, g3 B, g1 A; query 2 is unchanged.
    assert result["R@1_excl"] == pytest.approx(1 / 3)
    assert result["R@5_excl"] == pytest.approx(1.0)
    assert result["mAP_excl"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)


def test_retrieval_skips_a_query_whose_only_match_shares_its_sound() -> None:
    table = _retrieval_table(
        [
            ("train", "A", "m1", "a", [1, 0]),
            ("train", "B", "m2", "b", [0, 1]),
            # The only A in the gallery uses m1 too: answered at rank 1, then unanswerable.
            ("test", "A", "m1", "x", [1, 0.1]),
            # Ranks g0 A before g1 B: R@1 = 0 either way.
            ("test", "B", "m3", "y", [1, 0.5]),
        ]
    )
    result = retrieval.run(table, "video", 0)
    assert result["R@1"] == pytest.approx(1 / 2)
    assert result["R@1_excl"] == pytest.approx(0.0)


def test_originality_finds_planted_outliers(separable_originality: dict, noise: pl.DataFrame) -> None:
    result = separable_originality
    for detector in ("iforest", "lof", "knn", "iforest_pca", "knn_pca"):
        assert result[f"auroc_{detector}"] >= 0.95
        assert result[f"spearman_truth_{detector}"] > 0.5
        assert {f"spearman_{detector}_sound", f"top_decile_delta_{detector}_hashtag"} <= set(result)
    assert all(math.isfinite(v) for v in result.values())
    # In pure noise the planted "outliers" are like any other video.
    assert originality.run(noise, "video", seed=0)["auroc_knn"] < 0.8


def test_reduced_detectors_are_not_swamped_by_a_few_loud_dimensions(separable: pl.DataFrame) -> None:
    rng = np.random.default_rng(1)
    video = np.asarray(separable["video"].to_list())
    loud = rng.normal(scale=20.0, size=(len(video), 6))  # independent noise, 6 dimensions, 20x the scale
    louder = pl.Series(np.hstack([video, loud]).tolist(), dtype=pl.List(pl.Float32))
    table = separable.with_columns(video=louder)
    result = originality.run(table, "video", seed=0)
    assert result["auroc_knn"] < 0.7  # the cosine is the loud dimensions'
    assert result["auroc_knn_pca"] >= 0.95 and result["auroc_iforest_pca"] >= 0.9


def test_originality_sees_likes_fall_with_originality_within_author(
    separable: pl.DataFrame, separable_originality: dict
) -> None:
    penalised = separable.with_columns(
        likes=(pl.col("likes").log1p() - 4 * pl.col("originality")).exp().round().cast(pl.Int64)
    )
    result = originality.run(penalised, "video", seed=0)
    assert result["spearman_knn"] < -0.3
    assert result["top_decile_delta_knn"] < 0
    assert separable_originality["spearman_knn"] > -0.3


def test_cohort_relative_falls_back_to_global_for_small_cohorts() -> None:
    scores = np.array([1.0, 2, 3, 4, 5, 10, 20, 30])
    cohorts = np.array([0, 0, 0, 0, 0, 1, 1, -1])
    relative = originality.cohort_relative(scores, cohorts)
    # Cohort 0 has 5 videos: z-scores within it (mean 3, sd √2).
    assert relative[:5] == pytest.approx((scores[:5] - 3) / math.sqrt(2))
    # Cohort 1 has 2 and -1 has none: global z-scores.
    assert relative[5:] == pytest.approx(((scores - scores.mean()) / scores.std())[5:])


def test_likes_author_features_predict_planted_followers(separable: pl.DataFrame) -> None:
    result = likes.run(separable, "video", seed=0)
    names = {
        f"{m}_{s}{t}"
        for m in ("r2", "spearman")
        for s in ("author", "content", "combined")
        for t in ("", "_time")
    } | {f"r2_pca_{m}{t}" for m in ("ridge", "gbm") for t in ("", "_time")}
    assert set(result) == names
    assert result["r2_author"] >= 0.8
    assert result["r2_author_time"] >= 0.8
    assert result["r2_combined"] >= 0.7
    # The content here says nothing about followers.
    assert result["r2_content"] < 0.3


def test_time_forward_split_trains_on_the_oldest_videos(separable: pl.DataFrame) -> None:
    known = np.ones(separable.height, dtype=bool)
    known[:10] = False
    train, test = likes.time_forward_split(separable, known)
    times = separable["create_time"].to_numpy()
    # 150 videos with likes: the oldest 120 train, the newest 30 test, the 10 without likes neither.
    assert (train.sum(), test.sum()) == (120, 30)
    assert not (train | test)[:10].any()
    assert times[train].max() <= times[test].min()


def test_hashtags_recover_the_class_tag(separable: pl.DataFrame, noise: pl.DataFrame) -> None:
    good, bad = hashtags.run(separable, "video", 0), hashtags.run(noise, "video", 0)
    # cls* (about 25 train uses each) and fyp are frequent; there are no rare tags.
    assert {"P@5_knn", "R@5_head", "NDCG@5_knn_frequent"} <= set(good)
    assert not any(name.endswith("_rare") for name in good)
    # Each test video has 1–2 tags among 5, so R@5 = 1 always; NDCG@5 rewards the class tag on top.
    assert good["R@5_knn"] == pytest.approx(1.0)
    assert good["NDCG@5_knn"] > bad["NDCG@5_knn"] + 0.1
    assert good["NDCG@5_head"] > bad["NDCG@5_head"] + 0.1


def test_a_head_of_one_tag_scores_it(separable: pl.DataFrame) -> None:
    """Only `fyp` (on 9 videos in 10, not all) is used often enough for the head; the rest once each."""
    tags = [["fyp"] if i % 10 else [f"once{i}"] for i in range(separable.height)]
    metrics = hashtags.run(separable.with_columns(pl.Series("hashtags", tags)), "video", 0)
    assert metrics["P@5_head_frequent"] == pytest.approx(0.2)  # fyp, the one true frequent tag, in 5 slots


def test_tasks_skip_without_their_metadata(separable: pl.DataFrame) -> None:
    bare = separable.with_columns(
        pl.lit(None, dtype=pl.String).alias("label"), pl.lit(None, dtype=pl.Int64).alias("likes")
    )
    for task in (classification, retrieval, likes):
        assert task.skip_reason(bare) is not None
        assert task.run(bare, "video", 0) == {}
    results = run_tasks(bare, None, "video", 0)
    assert set(results.skipped) == {"classification", "retrieval", "likes"}
    assert "label" in results.skipped["classification"] and "likes" in results.skipped["likes"]
    assert set(results.metrics) == {"originality", "hashtags"}


def test_missing_audio_skips_every_task(separable: pl.DataFrame) -> None:
    silent = separable.with_columns(pl.lit(None, dtype=pl.List(pl.Float32)).alias("audio"))
    results = run_tasks(silent, ["classification", "likes"], "audio-visual", 0)
    assert results.metrics == {}
    assert all("audio" in reason for reason in results.skipped.values())
    with pytest.raises(TkdsError, match="unknown task"):
        run_tasks(silent, ["nope"], "video", 0)


def test_audio_visual_cosine_is_the_mean_of_the_modality_cosines(separable: pl.DataFrame) -> None:
    av = features.embedding(separable.head(2), "audio-visual")
    v, a = features.embedding(separable.head(2), "video"), features.embedding(separable.head(2), "audio")
    assert np.linalg.norm(av, axis=1) == pytest.approx([1, 1], abs=1e-6)
    assert av[0] @ av[1] == pytest.approx((v[0] @ v[1] + a[0] @ a[1]) / 2, abs=1e-6)


def test_sound_onehot_matches_exactly_the_videos_on_one_sound(separable: pl.DataFrame) -> None:
    table = features.reference_table(separable, "sound_onehot")
    x = features.embedding(table, "video")
    sounds = table["music_id"].to_numpy()
    assert np.allclose(x @ x.T, sounds[:, None] == sounds[None, :])
    assert table["audio"].null_count() == table.height


def test_metadata_only_carries_the_author_signal(separable: pl.DataFrame) -> None:
    result = likes.run(features.reference_table(separable, "metadata_only"), "video", 0)
    assert result["r2_content"] == pytest.approx(result["r2_author"], abs=0.02)


def test_registry_modules_share_one_interface() -> None:
    assert list(TASKS) == ["classification", "retrieval", "originality", "likes", "hashtags"]
    for name, task in TASKS.items():
        assert name == task.NAME
        assert callable(task.run)
        assert callable(task.skip_reason)
        assert isinstance(task.NEEDS, tuple)


def test_every_task_runs_on_every_feature_set(separable: pl.DataFrame) -> None:
    """The audio-visual embedding is built from two parts: it must keep their dtype through every task."""
    for name in ("video", "audio", "audio-visual"):
        assert features.embedding(separable, name).dtype == np.float32
        results = run_tasks(separable, None, name, 0)
        assert set(results.metrics) == set(TASKS), (name, results.skipped)
