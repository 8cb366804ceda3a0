"""The blockwise task paths against straightforward full-matrix references, and their memory bound."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import polars as pl
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import RidgeCV
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tkds.benchmarks import features, metrics
from tkds.benchmarks.tasks import hashtags, likes, originality, retrieval

ROWS, DIM = 2000, 24


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks far smaller than the table, so that every merge and block boundary is crossed."""
    monkeypatch.setattr(features, "QUERY_BLOCK", 100)
    monkeypatch.setattr(features, "GALLERY_BLOCK", 300)
    monkeypatch.setattr(features, "ROW_BLOCK_ENTRIES", 50_000)
    monkeypatch.setattr(hashtags, "ROW_BLOCK_ENTRIES", 2_000)


def table(rows: int = ROWS, ties: bool = False, seed: int = 0) -> pl.DataFrame:
    """Labelled videos near 6 class centroids; `ties`: coordinates rounded so that cosines tie exactly."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 6, rows)
    x = rng.normal(size=(6, DIM))[label] + rng.normal(size=(rows, DIM))
    if ties:
        x = np.round(x).clip(-1, 1)
        x[np.abs(x).sum(axis=1) == 0, 0] = 1
    unknown = rng.random((3, rows)) < 0.1  # some unknown labels, sounds and authors
    sound, author, extra_tag = rng.integers(0, 80, rows), rng.integers(0, 200, rows), rng.zipf(1.4, rows)
    return pl.DataFrame(
        {
            "split": rng.choice(["train", "val", "test"], rows, p=[0.7, 0.1, 0.2]),
            "video": pl.Series(_unit(x).astype(np.float32)).cast(pl.List(pl.Float32)),
            "label": [None if u else f"c{c}" for c, u in zip(label, unknown[0], strict=True)],
            "music_id": [None if u else f"s{s}" for s, u in zip(sound, unknown[1], strict=True)],
            "author_id": [None if u else f"a{a}" for a, u in zip(author, unknown[2], strict=True)],
            "hashtags": [
                [f"cls{c}", *([f"t{t}"] if t < 40 else [])] for c, t in zip(label, extra_tag, strict=True)
            ],
        }
    )


def reference_retrieval(t: pl.DataFrame) -> dict[str, float]:
    """Every query's whole ranking by a stable argsort, removed items last, scored by the matrix metrics."""
    x = features.l2_normalise(features.embedding(t, "video"))
    labelled = t["label"].is_not_null().to_numpy()
    queries = np.flatnonzero(labelled & features.in_split(t, "test"))
    gallery = np.flatnonzero(labelled & features.in_split(t, "train"))
    label, sound, author = (features.codes(t[c]) for c in ("label", "music_id", "author_id"))
    sim = x[queries] @ x[gallery].T
    relevant = retrieval._same(label[queries], label[gallery])
    same = retrieval._same
    shared = same(sound[queries], sound[gallery]) | same(author[queries], author[gallery])
    result = {}
    for suffix, removed in (("", np.zeros_like(shared)), ("_excl", shared)):
        order = np.argsort(np.where(removed, np.inf, -sim), axis=1, kind="stable")
        ranked = np.take_along_axis(relevant & ~removed, order, axis=1)
        result.update({f"R@{k}{suffix}": metrics.recall_at_k(ranked, k) for k in retrieval.KS})
        result[f"mAP{suffix}"] = metrics.mean_average_precision(ranked)
    return result


@pytest.mark.parametrize("ties", [False, True])
def test_retrieval_matches_full_argsort_ranking(small_blocks: None, ties: bool) -> None:
    t = table(ties=ties)
    assert retrieval.run(t, "video", 0) == pytest.approx(reference_retrieval(t), rel=1e-12)


def test_ranked_hits_is_the_matrix_ap() -> None:
    ranked = np.random.default_rng(3).random((50, 40)) < 0.2
    rows, positions = np.nonzero(ranked)
    ap, first = metrics.ranked_hits(rows, positions + 1, len(ranked))
    answerable = ranked.any(axis=1)
    assert np.nanmean(ap) == pytest.approx(metrics.mean_average_precision(ranked), rel=1e-12)
    assert np.isnan(ap[~answerable]).all()
    assert (first[answerable] == ranked[answerable].argmax(axis=1) + 1).all()


def test_top_k_scores_are_the_full_matrix_neighbours(small_blocks: None) -> None:
    rng = np.random.default_rng(1)
    x = _unit(rng.normal(size=(1000, DIM))).astype(np.float32)
    for queries, exclude_self in ((x[:350], False), (x, True)):
        full = queries @ x.T
        if exclude_self:
            np.fill_diagonal(full, -np.inf)
        expected = np.argsort(-full, axis=1, kind="stable")[:, :20]
        indices, sims = features.cosine_neighbours(queries, x, 20, exclude_self=exclude_self)
        assert (indices == expected).all()
        assert sims == pytest.approx(np.take_along_axis(full, expected, axis=1), abs=1e-5)


@pytest.mark.parametrize("zero_rows", [0, 30])
def test_lof_and_knn_match_scikit_learn_and_the_full_matrix(
    small_blocks: None, monkeypatch: pytest.MonkeyPatch, zero_rows: int
) -> None:
    monkeypatch.setattr(originality, "TREES", 2)  # the forest is scikit-learn's own, unchanged
    x = features.l2_normalise(features.embedding(table(1500), "video"))
    x[:zero_rows] = 0  # rows without this modality: LOF must search by Euclidean distance, not cosine
    scores = originality.detector_scores(x, seed=0)
    lof = LocalOutlierFactor(n_neighbors=originality.LOF_K).fit(x)
    assert scores["lof"] == pytest.approx(-lof.negative_outlier_factor_, rel=1e-4)
    cosines = features.l2_normalise(x) @ features.l2_normalise(x).T
    np.fill_diagonal(cosines, -np.inf)
    nearest = -np.sort(-cosines, axis=1)[:, : originality.KNN_K]
    assert scores["knn"] == pytest.approx((1 - nearest).mean(axis=1), abs=1e-5)
    reduced = originality.reduced(x)
    assert reduced.shape == (len(x), originality.PCA_DIMS)
    distances, _ = NearestNeighbors(n_neighbors=originality.KNN_K + 1).fit(reduced).kneighbors(reduced)
    assert scores["knn_pca"] == pytest.approx(distances[:, 1:].mean(axis=1), rel=1e-6)


def test_hashtag_blocks_give_the_whole_matrix_metrics(small_blocks: None) -> None:
    t = table(1200)
    y_train, truth, answerable = hashtags.train_test(t)
    x = features.embedding(t, "video")
    x_train, x_test = x[features.in_split(t, "train")], x[features.in_split(t, "test")][answerable]
    truth = truth[answerable]
    model, head = hashtags._head(x_train, y_train, 0)
    scores = {
        "knn": features.knn_vote(x_test, x_train, y_train, hashtags.K_NEIGHBOURS),
        "head": hashtags._head_scores(model, head, x_test, y_train.shape[1]),
    }
    frequent = y_train.sum(axis=0) >= hashtags.FREQUENT_MIN_USES
    expected = {}
    for method, score in scores.items():
        for suffix, tags in {"": np.ones_like(frequent), "_frequent": frequent, "_rare": ~frequent}.items():
            if not truth[:, tags].any():
                continue
            at = (score[:, tags], truth[:, tags], hashtags.AT)
            expected[f"P@5_{method}{suffix}"] = metrics.precision_at_k(*at)
            expected[f"R@5_{method}{suffix}"] = metrics.recall_at_k_multilabel(*at)
            expected[f"NDCG@5_{method}{suffix}"] = metrics.ndcg_at_k(*at)
    assert frequent.any() and not frequent.all()
    assert hashtags.run(t, "video", 0) == pytest.approx(expected, rel=1e-9)


def likes_table(rows: int, dim: int, seed: int = 0) -> pl.DataFrame:
    """Likes log-linear in followers and one embedding direction; some author statistics unknown, age
    unknown everywhere (a column the imputer drops), a constant video count."""
    rng = np.random.default_rng(seed)
    followers = np.round(np.exp(rng.uniform(5, 13, rows)))
    x = _unit(rng.normal(size=(rows, dim))).astype(np.float32)
    log_likes = 0.9 * np.log1p(followers) + 3 * x[:, 0] + rng.normal(0, 0.5, rows)
    unknown_likes, unknown_followers = (np.flatnonzero(rng.random(rows) < p) for p in (0.05, 0.2))
    return pl.DataFrame(
        {
            "split": rng.choice(["train", "val", "test"], rows, p=[0.7, 0.1, 0.2]),
            "video": pl.Series(x).cast(pl.List(pl.Float32)),
            "author_id": [f"a{a}" for a in rng.integers(0, rows // 4, rows)],
            "likes": pl.Series(np.round(np.expm1(log_likes))).cast(pl.Int64).scatter(unknown_likes, None),
            "followers": pl.Series(followers).cast(pl.Int64).scatter(unknown_followers, None),
            "author_hearts": rng.integers(100, 10**6, rows),
            "author_videos": np.full(rows, 7),
            "age_days": pl.Series([None] * rows, dtype=pl.Float64),
            "create_time": rng.integers(1_600_000_000, 1_700_000_000, rows),
        }
    )


def reference_likes(t: pl.DataFrame) -> tuple[dict[str, float], list[float]]:
    """likes.run's metrics as scikit-learn's SimpleImputer → StandardScaler → RidgeCV pipeline gives them,
    on whole float64 matrices (on float32 the pipeline rounds its scaled features to float32: 1e-6 off),
    and the alphas it chose."""
    y = np.log1p(t["likes"].fill_null(0).to_numpy().astype(float))
    known = t["likes"].is_not_null().to_numpy()
    splits = {
        "": (known & features.in_split(t, "train"), known & features.in_split(t, "test")),
        "_time": likes.time_forward_split(t, known),
    }
    author, content = features.metadata_features(t), features.embedding(t, "video").astype(np.float64)
    inputs = {"author": author, "content": content, "combined": np.hstack([author, content])}
    result, alphas = {}, []
    for suffix, (train, test) in splits.items():
        for name, x in inputs.items():
            ridge = RidgeCV(alphas=likes.ALPHAS)
            model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), ridge)
            predicted = model.fit(x[train], y[train]).predict(x[test])
            result[f"r2_{name}{suffix}"] = metrics.r2(y[test], predicted)
            result[f"spearman_{name}{suffix}"] = metrics.spearman(y[test], predicted)
            alphas.append(ridge.alpha_)
    return result, alphas


@pytest.mark.filterwarnings("ignore:Skipping features without any observed values")
@pytest.mark.parametrize(("rows", "dim"), [(900, 24), (60, 100)])
def test_likes_ridge_is_the_scikit_learn_pipeline(
    monkeypatch: pytest.MonkeyPatch, rows: int, dim: int
) -> None:
    """XᵀX summed over blocks of 37 rows gives the pipeline's alpha and metrics, with fewer rows than
    features too (where RidgeCV decomposes X Xᵀ instead)."""
    monkeypatch.setattr(likes, "ROW_BLOCK", 37)
    t = likes_table(rows, dim)
    expected, expected_alphas = reference_likes(t)
    chosen = []
    original = likes.ridge_loo
    monkeypatch.setattr(likes, "ridge_loo", lambda *a: chosen.append(original(*a)[1]) or original(*a))
    result = likes.run(t, "video", 0)  # the PCA read-outs' metrics and ridges come after these
    assert {name: result[name] for name in expected} == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert chosen[: len(expected_alphas)] == expected_alphas
    assert len(set(chosen)) > 1, "the alphas differ between feature sets: the choice is exercised"


BOUNDED = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np, polars as pl, torch
    from tkds.benchmarks import features
    from tkds.benchmarks.tasks import retrieval

    gallery, queries = 200_000, 300
    rng = np.random.default_rng(0)
    x = rng.normal(size=(gallery + queries, 8)).astype(np.float32)
    t = pl.DataFrame({
        "split": ["train"] * gallery + ["test"] * queries,
        "video": pl.Series(x).cast(pl.List(pl.Float32)),
        "label": rng.integers(0, 20, gallery + queries).astype(str),
        "music_id": rng.integers(0, 5000, gallery + queries).astype(str),
        "author_id": rng.integers(0, 5000, gallery + queries).astype(str),
    })
    torch.ones(8) @ torch.ones(8)  # torch's own start-up memory is not the search's
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    features.cosine_neighbours(x[gallery:], x[:gallery], 20)
    retrieval.run(t, "video", 0)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"grown_mb": (after - before) / 1024}))
    """
)


@pytest.mark.slow
def test_search_memory_does_not_grow_with_the_gallery() -> None:
    """300 queries against 200,000 videos: one 300 × 200,000 block of similarities and their ranking
    arrays take about 2 GB (the old 512-row chunks did); the blocks stay within ROW_BLOCK_ENTRIES' 400 MB."""
    run = subprocess.run([sys.executable, "-c", BOUNDED], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.splitlines()[-1])["grown_mb"] < 600


LIKES_BOUNDED = textwrap.dedent(
    """
    import json, resource
    import numpy as np, polars as pl
    from tkds.benchmarks.tasks import likes

    rows, dim = 60_000, 256
    rng = np.random.default_rng(0)
    t = pl.DataFrame({
        "split": rng.choice(["train", "test"], rows, p=[0.8, 0.2]),
        "video": pl.Series(rng.normal(size=(rows, dim)).astype(np.float32)).cast(pl.List(pl.Float32)),
        "author_id": rng.integers(0, 5000, rows).astype(str),
        "likes": rng.integers(0, 10**6, rows),
        "followers": rng.integers(1, 10**6, rows),
        "create_time": rng.integers(1_600_000_000, 1_700_000_000, rows),
    })
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    likes.run(t, "video", 0)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"grown_mb": (after - before) / 1024}))
    """
)


@pytest.mark.slow
def test_likes_memory_is_blocks_not_copies_of_the_table() -> None:
    """60,000 × 256: the imputer → scaler → RidgeCV pipeline made float64 copies of the train matrix
    (about 630 MB more than building the table took); the blockwise fit stays far below."""
    run = subprocess.run([sys.executable, "-c", LIKES_BOUNDED], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.splitlines()[-1])["grown_mb"] < 200
