"""Originality: how atypical each video's embedding is, by three anomaly detectors (higher = more original).

Every detector is fitted and scored on the whole table: it is label-free, so nothing of likes or of the
ground truth leaks, and each video is judged against the full corpus.
- iforest: IsolationForest (200 trees), −score_samples;
- lof: LocalOutlierFactor (20 neighbours), −negative_outlier_factor_ (a video is not its own neighbour);
- knn: mean cosine distance to the 10 nearest other videos (DN2);
- iforest_pca, knn_pca: the same IsolationForest, and the mean Euclidean distance to the 10 nearest other
  videos, on the embedding standardised per dimension and reduced by PCA to its top PCA_DIMS components
  (fitted on every row: label-free), so that a few wide, noisy dimensions cannot dominate either.
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
Per-video outputs of the AUROC metrics: each video's is_outlier (0 or 1) and its score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length

from tkds.benchmarks.features import codes, column, embedding, l2_normalise, top_k_scores
from tkds.benchmarks.metrics import auroc, author_demeaned_spearman, demean_within, spearman, top_decile_delta
from tkds.benchmarks.tasks.likes import pca_scores
from tkds.benchmarks.tasks.per_video import Outputs, record

NAME = "originality"
NEEDS = ()
TREES = 200
LOF_K = 20
KNN_K = 10
MIN_COHORT = 5
MIN_ROWS = 10
PCA_DIMS = 16


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


@dataclass(frozen=True)
class Forest:
    """A fitted IsolationForest as plain arrays, scored without scikit-learn's objects.

    Every tree's nodes lie side by side: `left` and `right` are the children's positions in these arrays
    (−1 at a leaf), and a leaf's `depth` is what scikit-learn adds for it: its depth plus the average path
    length of its train samples, minus 1. Rows go left where x[feature] ≤ threshold, in float32 as
    scikit-learn's trees compare, and the score is 2^(−mean depth / c(max_samples)), the IsolationForest
    score (−score_samples) bit for bit.
    """

    roots: np.ndarray  # (trees,) int64: each tree's first node
    feature: np.ndarray  # (nodes,) int64; 0 at a leaf
    threshold: np.ndarray  # (nodes,) float64
    left: np.ndarray  # (nodes,) int64
    right: np.ndarray  # (nodes,) int64
    depth: np.ndarray  # (nodes,) float64
    denominator: float  # trees × c(max_samples)
    width: int  # the features it was fitted on

    @classmethod
    def fit(cls, x: np.ndarray, seed: int) -> Forest:
        """scikit-learn's IsolationForest (TREES trees, its defaults) fitted on the rows of `x`."""
        forest = IsolationForest(n_estimators=TREES, random_state=seed).fit(x)
        arrays: dict[str, list[np.ndarray]] = {name: [] for name in ("feature", "threshold", "left", "right")}
        roots, depths, start = [], [], 0
        # The per-node depths and path lengths are what score_samples adds (private names of 1.4+).
        lengths = forest._decision_path_lengths, forest._average_path_length_per_tree
        for estimator, depth, average in zip(forest.estimators_, *lengths, strict=True):
            tree = estimator.tree_
            leaf = tree.children_left < 0
            roots.append(start)
            arrays["feature"].append(np.where(leaf, 0, tree.feature).astype(np.int64))
            arrays["threshold"].append(tree.threshold.astype(np.float64))
            for side, children in (("left", tree.children_left), ("right", tree.children_right)):
                arrays[side].append(np.where(leaf, -1, children + start).astype(np.int64))
            depths.append(depth + average - 1.0)
            start += tree.node_count
        denominator = len(forest.estimators_) * float(_average_path_length([forest._max_samples])[0])
        joined = {name: np.concatenate(parts) for name, parts in arrays.items()}
        return cls(np.array(roots, dtype=np.int64), **joined, depth=np.concatenate(depths),
                   denominator=denominator, width=x.shape[1])  # fmt: skip

    def score(self, x: np.ndarray, block: int = 4096) -> np.ndarray:
        """The IsolationForest score of each row of `x` (higher = more atypical), in blocks of rows."""
        scores = np.empty(len(x))
        for start in range(0, len(x), block):
            rows = np.asarray(x[start : start + block], dtype=np.float32)
            node = np.broadcast_to(self.roots, (len(rows), len(self.roots))).copy()
            inner = self.left[node] >= 0
            while inner.any():
                value = np.take_along_axis(rows, self.feature[node], axis=1)
                child = np.where(value <= self.threshold[node], self.left[node], self.right[node])
                node = np.where(inner, child, node)
                inner = self.left[node] >= 0
            # Summed tree by tree, in order, as scikit-learn adds them.
            depths = np.cumsum(self.depth[node], axis=1)[:, -1]
            # One train sample: no depth, and scikit-learn's score is 2^−1.
            ratio = depths / self.denominator if self.denominator else np.ones_like(depths)
            scores[start : start + block] = 2 ** (-ratio)
        return scores


@dataclass(frozen=True)
class OriginalityReadout:
    """The IsolationForest of the originality task and its scores of every corpus video: what `tkds serve`
    places an upload among."""

    features: str
    forest: Forest
    keys: np.ndarray  # (videos,) str: the table's rows' keys, in order ("" where it has none)
    corpus_scores: np.ndarray  # (videos,) the forest's score of each

    def score(self, x: np.ndarray) -> np.ndarray:
        """The score of each row of the embedding `x` (per `features`), L2-normalised as the task does."""
        return self.forest.score(l2_normalise(x))


def fit_readout(table: pl.DataFrame, features: str, seed: int) -> OriginalityReadout | None:
    """The forest fitted on every row's normalised embedding; None when the task cannot run."""
    if skip_reason(table) is not None:
        return None
    x = l2_normalise(embedding(table, features))
    forest = Forest.fit(x, seed)
    keys = np.array(column(table, "key").cast(pl.String).fill_null("").to_list(), dtype=str)
    return OriginalityReadout(features, forest, keys, forest.score(x))


def _neighbour_scores(x: np.ndarray) -> dict[str, np.ndarray]:
    """LOF and kNN distance of each row of the L2-normalised `x` against all other rows.

    One exact blockwise neighbour search serves both: on unit rows the Euclidean neighbours are the
    cosine ones. A zero row (no such modality) breaks that, so LOF then searches by distance itself.
    """
    lof_k, knn_k = min(LOF_K, len(x) - 1), min(KNN_K, len(x) - 1)
    indices, sims = top_k_scores(x, x, max(LOF_K, KNN_K), exclude_self=True)
    squared_norms = np.einsum("id,id->i", x, x)
    if (squared_norms > 0).all():
        lof_neighbours = indices[:, :lof_k]
    else:
        # argmax_j (x·y_j − ‖y_j‖² / 2) = argmin_j ‖x − y_j‖.
        lof_neighbours, _ = top_k_scores(x, x, lof_k, exclude_self=True, gallery_bias=-squared_norms / 2)
    return {"lof": local_outlier_factor(x, lof_neighbours), "knn": (1.0 - sims[:, :knn_k]).mean(axis=1)}


def reduced(x: np.ndarray, k: int = PCA_DIMS) -> np.ndarray:
    """`x` standardised per column (a constant column stays 0) and projected on its top k principal
    components, at most one fewer than its rows."""
    x = np.asarray(x, dtype=np.float64)
    spread = x.std(axis=0)
    z = (x - x.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    return pca_scores(z, np.ones(len(z), dtype=bool), max(1, min(k, z.shape[1], len(z) - 1)))


def _reduced_scores(x: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """IsolationForest and mean Euclidean kNN distance on the standardised, PCA-reduced `x`."""
    p = reduced(x)
    knn_k = min(KNN_K, len(p) - 1)
    bias = -np.einsum("id,id->i", p, p) / 2  # argmax_j (x·y_j − ‖y_j‖² / 2) = argmin_j ‖x − y_j‖
    neighbours, _ = top_k_scores(p, p, knn_k, exclude_self=True, gallery_bias=bias)
    return {"iforest_pca": Forest.fit(p, seed).score(p), "knn_pca": _euclidean(p, neighbours).mean(axis=1)}


def detector_scores(x: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Anomaly scores of each row of the embedding `x` against all rows; higher = more atypical.
    iforest, lof and knn read its L2-normalised rows (the iforest is `fit_readout`'s forest), the _pca
    detectors its standardised PCA reduction."""
    unit = l2_normalise(x)
    return {
        "iforest": Forest.fit(unit, seed).score(unit),
        **_neighbour_scores(unit),
        **_reduced_scores(x, seed),
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


def run(table: pl.DataFrame, features: str, seed: int, outputs: Outputs = None) -> dict[str, float]:
    """Each detector's scores (`detector_scores`), globally and per cohort, against log likes and the
    ground truth. The AUROCs' per-video outputs are appended to `outputs` when given."""
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
    scores = detector_scores(embedding(table, features), seed)
    for detector, raw in scores.items():
        scopes = {"": raw, **{f"_{scope}": cohort_relative(raw, c) for scope, c in cohorts.items()}}
        for suffix, score in scopes.items():
            name = f"{detector}{suffix}"
            if likes.any():
                against_likes = (score[likes], log_likes[likes], authors[likes])
                metrics[f"spearman_{name}"] = author_demeaned_spearman(*against_likes)
                metrics[f"top_decile_delta_{name}"] = top_decile_delta(*against_likes)
            if outlier.any():
                metrics[f"auroc_{name}"] = auroc(is_outlier[outlier], score[outlier])
                rows = np.flatnonzero(outlier)
                record(outputs, table, rows, f"auroc_{name}", is_outlier[rows].astype(float), score[rows])
            if original.any():
                metrics[f"spearman_truth_{name}"] = spearman(score[original], truth[original])
    return metrics
