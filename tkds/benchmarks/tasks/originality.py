"""Originality: how atypical each video's embedding is, by three anomaly detectors (higher = more original).

Every detector is fitted and scored on the whole table: it is label-free, so nothing of likes or of the
ground truth leaks, and each video is judged against the full corpus.
- iforest: IsolationForest (200 trees), −score_samples;
- lof: LocalOutlierFactor (20 neighbours), −negative_outlier_factor_ (a video is not its own neighbour);
- knn: mean cosine distance to the 10 nearest other videos (DN2).
Each score is read globally and within cohorts: sound (music_id) and hashtag (the first hashtag). Within a
cohort a video's score is z-scored among the cohort's videos; a video in a cohort of fewer than 5 (or with
none) gets its z-score among all videos instead, so both sit on one scale.
Metrics per detector, globally and with suffix `_sound` or `_hashtag`, over the rows of every split:
- `spearman_{det}`: Spearman of score vs log(1 + likes) with author fixed effects (both demeaned within
  author; authors with one video dropped);
- `top_decile_delta_{det}`: mean author-demeaned log(1 + likes) of the top 10 % of scores minus that of
  the rest, a non-linearity check beside the rank correlation;
- `auroc_{det}`: against the ground-truth is_outlier, over the rows where it is known;
- `spearman_truth_{det}`: Spearman against the ground-truth originality, where known.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.ensemble import IsolationForest

from tkds.benchmarks.features import codes, column, embedding, l2_normalise, top_k_scores
from tkds.benchmarks.metrics import auroc, author_demeaned_spearman, demean_within, spearman, top_decile_delta

NAME = "originality"
NEEDS = ()
TREES = 200
LOF_K = 20
KNN_K = 10
MIN_COHORT = 5
MIN_ROWS = 10


def _targets(table: pl.DataFrame) -> dict[str, np.ndarray]:
    """Rows usable against each target; all False where a target has fewer than two such rows.

    likes needs an author too; is_outlier needs both classes among the known rows.
    """
    outlier = column(table, "is_outlier")
    rows = {
        "likes": (column(table, "likes").is_not_null() & column(table, "author_id").is_not_null()).to_numpy(),
        "is_outlier": outlier.is_not_null().to_numpy() & (outlier.drop_nulls().n_unique() == 2),
        "originality": column(table, "originality").is_not_null().to_numpy(),
    }
    return {target: known & (known.sum() >= 2) for target, known in rows.items()}


def skip_reason(table: pl.DataFrame) -> str | None:
    """Why the task cannot run on `table`, or None."""
    if table.height < MIN_ROWS:
        return f"only {table.height} videos; the detectors need at least {MIN_ROWS}"
    if not any(known.any() for known in _targets(table).values()):
        return "no likes (with author_id), is_outlier with both classes, or originality to score against"
    return None


def _euclidean(x: np.ndarray, neighbours: np.ndarray, block: int = 1024) -> np.ndarray:
    """‖x_i − x_j‖ in float64 for each row i and each of its neighbours j, a block of rows at a time."""
    distances = np.empty(neighbours.shape)
    for start in range(0, len(x), block):
        rows = slice(start, start + block)
        difference = x[rows, None, :].astype(np.float64) - x[neighbours[rows]]
        distances[rows] = np.sqrt(np.einsum("ikd,ikd->ik", difference, difference))
    return distances


def local_outlier_factor(x: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """scikit-learn's LocalOutlierFactor (−negative_outlier_factor_) from each row's k nearest other rows.

    Its formula on the exact Euclidean distances: reach(i, j) = max(d(i, j), k-distance(j)),
    lrd(i) = 1 / (mean_j reach(i, j) + 1e−10), LOF(i) = mean_j lrd(j) / lrd(i).
    """
    distances = _euclidean(x, neighbours)
    k_distance = distances.max(axis=1)
    reach = np.maximum(distances, k_distance[neighbours])
    density = 1.0 / (reach.mean(axis=1) + 1e-10)
    return (density[neighbours] / density[:, None]).mean(axis=1)


def detector_scores(x: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Anomaly scores of each row of the L2-normalised `x` against all rows; higher = more atypical.

    One exact blockwise neighbour search serves LOF and kNN: on unit rows the Euclidean neighbours are
    the cosine ones. A zero row (no such modality) breaks that, so LOF then searches by distance itself.
    """
    forest = IsolationForest(n_estimators=TREES, random_state=seed).fit(x)
    lof_k, knn_k = min(LOF_K, len(x) - 1), min(KNN_K, len(x) - 1)
    indices, sims = top_k_scores(x, x, max(LOF_K, KNN_K), exclude_self=True)
    squared_norms = np.einsum("id,id->i", x, x)
    if (squared_norms > 0).all():
        lof_neighbours = indices[:, :lof_k]
    else:
        # argmax_j (x·y_j − ‖y_j‖² / 2) = argmin_j ‖x − y_j‖.
        lof_neighbours, _ = top_k_scores(x, x, lof_k, exclude_self=True, gallery_bias=-squared_norms / 2)
    return {
        "iforest": -forest.score_samples(x),
        "lof": local_outlier_factor(x, lof_neighbours),
        "knn": (1.0 - sims[:, :knn_k]).mean(axis=1),
    }


def _zscore(values: np.ndarray) -> np.ndarray:
    spread = values.std()
    return (values - values.mean()) / spread if spread > 0 else np.zeros_like(values)


def cohort_relative(scores: np.ndarray, cohorts: np.ndarray) -> np.ndarray:
    """z-score within each cohort of ≥ MIN_COHORT rows; the global z-score elsewhere (cohort −1 = none)."""
    _, index, counts = np.unique(cohorts, return_inverse=True, return_counts=True)
    centred = demean_within(scores, cohorts)
    spread = np.sqrt(np.bincount(index, weights=centred**2) / counts)[index]
    within = np.divide(centred, spread, out=np.zeros_like(centred), where=spread > 0)
    in_cohort = (counts[index] >= MIN_COHORT) & (cohorts >= 0)
    return np.where(in_cohort, within, _zscore(scores))


def run(table: pl.DataFrame, features: str, seed: int) -> dict[str, float]:
    """Each detector's scores, globally and per cohort, against log likes and the ground truth."""
    if skip_reason(table) is not None:
        return {}
    rows = _targets(table)
    log_likes = np.log1p(column(table, "likes").fill_null(0).to_numpy().astype(float))
    authors, is_outlier, truth = (
        column(table, c).to_numpy() for c in ("author_id", "is_outlier", "originality")
    )
    cohorts = {
        "sound": codes(column(table, "music_id")),
        "hashtag": codes(column(table, "hashtags").cast(pl.List(pl.String)).list.first()),
    }
    likes, outlier, original = rows["likes"], rows["is_outlier"], rows["originality"]
    metrics = {}
    for detector, raw in detector_scores(l2_normalise(embedding(table, features)), seed).items():
        scopes = {"": raw, **{f"_{scope}": cohort_relative(raw, c) for scope, c in cohorts.items()}}
        for suffix, score in scopes.items():
            name = f"{detector}{suffix}"
            if likes.any():
                against_likes = (score[likes], log_likes[likes], authors[likes])
                metrics[f"spearman_{name}"] = author_demeaned_spearman(*against_likes)
                metrics[f"top_decile_delta_{name}"] = top_decile_delta(*against_likes)
            if outlier.any():
                metrics[f"auroc_{name}"] = auroc(is_outlier[outlier], score[outlier])
            if original.any():
                metrics[f"spearman_truth_{name}"] = spearman(score[original], truth[original])
    return metrics
