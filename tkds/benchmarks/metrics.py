"""Metric functions on plain arrays: ranking (R@k, mAP, P@k, NDCG@k), regression (R², Spearman), AUROC.

A ranking is a boolean relevance matrix in rank order: `relevance[q, i]` says whether the item at rank
i + 1 for query q is relevant. An item removed from a ranking (the leakage-excluded retrieval) may be
pushed to the end as non-relevant instead: R@k and AP only look at the positions of relevant items, so
the numbers are the same. Queries with no relevant item are left out of every mean, as in re-ID
protocols: no ranking could answer them. A mean over no queries is NaN.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def _answerable(relevance: np.ndarray) -> np.ndarray:
    rel = np.asarray(relevance, dtype=bool)
    return rel[rel.any(axis=1)]


def recall_at_k(relevance: np.ndarray, k: int) -> float:
    """R@k of retrieval: the fraction of queries with at least one relevant item in the top k."""
    return _mean(_answerable(relevance)[:, :k].any(axis=1))


def average_precision(relevance: np.ndarray) -> float:
    """AP of one ranking: the mean, over the ranks r of its relevant items, of precision@r."""
    return mean_average_precision(np.asarray(relevance, dtype=bool)[None, :])


def mean_average_precision(relevance: np.ndarray) -> float:
    """mAP: the mean AP over queries; AP = (1/R) Σ_r P@r · rel_r with R relevant items in the ranking."""
    rel = _answerable(relevance)
    precision = np.cumsum(rel, axis=1) / np.arange(1, rel.shape[1] + 1)
    return _mean((precision * rel).sum(axis=1) / rel.sum(axis=1))


def ranked_hits(query: np.ndarray, rank: np.ndarray, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query, AP and the rank of its first relevant item, from the ranks of its relevant items alone.

    `query` and `rank` (1-based) list every relevant item, grouped by query and in rank order within
    it (np.nonzero's order on a relevance matrix). AP is `mean_average_precision`'s: the mean over a
    query's relevant items, in rank order j = 1, 2, …, of j / rank_j, so a ranking need not be stored
    whole. A query with no relevant item gets AP NaN and first rank 0.
    """
    counts = np.bincount(query, minlength=n_queries)
    starts = np.cumsum(counts) - counts
    order_within = np.arange(1, len(query) + 1) - starts[query]
    precision_sums = np.bincount(query, weights=order_within / rank, minlength=n_queries)
    answerable = counts > 0
    ap = np.full(n_queries, np.nan)
    ap[answerable] = precision_sums[answerable] / counts[answerable]
    first_rank = np.zeros(n_queries, dtype=np.int64)
    first_rank[answerable] = rank[starts[answerable]]
    return ap, first_rank


def _top_k_hits(scores: np.ndarray, truth: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The hits of the top-k labels by score (ties to the lower label index), and |truth|, per query."""
    truth = np.asarray(truth, dtype=bool)
    keep = truth.any(axis=1)
    order = np.argsort(-np.asarray(scores)[keep], axis=1, kind="stable")[:, :k]
    return np.take_along_axis(truth[keep], order, axis=1), truth[keep].sum(axis=1)


def precision_at_k_per_query(scores: np.ndarray, truth: np.ndarray, k: int) -> np.ndarray:
    """|top-k ∩ true labels| / k of each query with a true label (`precision_at_k` is their mean)."""
    hits, _ = _top_k_hits(scores, truth, k)
    return hits.sum(axis=1) / k


def precision_at_k(scores: np.ndarray, truth: np.ndarray, k: int) -> float:
    """P@k of multi-label ranking: mean over queries of |top-k ∩ true labels| / k."""
    return _mean(precision_at_k_per_query(scores, truth, k))


def recall_at_k_per_query(scores: np.ndarray, truth: np.ndarray, k: int) -> np.ndarray:
    """|top-k ∩ true labels| / |true labels| of each query with a true label."""
    hits, n_true = _top_k_hits(scores, truth, k)
    return hits.sum(axis=1) / n_true


def recall_at_k_multilabel(scores: np.ndarray, truth: np.ndarray, k: int) -> float:
    """R@k of multi-label ranking: mean over queries of |top-k ∩ true labels| / |true labels|."""
    return _mean(recall_at_k_per_query(scores, truth, k))


def ndcg_at_k_per_query(scores: np.ndarray, truth: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k of each query with a true label."""
    hits, n_true = _top_k_hits(scores, truth, k)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discount[: hits.shape[1]]).sum(axis=1)
    ideal = np.cumsum(discount)[np.minimum(n_true, k) - 1]
    return dcg / ideal


def ndcg_at_k(scores: np.ndarray, truth: np.ndarray, k: int) -> float:
    """NDCG@k, binary gains: DCG = Σ_{i≤k} rel_i / log2(i + 1), divided by the DCG of min(k, |true|) hits."""
    return _mean(ndcg_at_k_per_query(scores, truth, k))


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination: 1 − Σ(y − ŷ)² / Σ(y − ȳ)²."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    return float(1.0 - ((y_true - y_pred) ** 2).sum() / ((y_true - y_true.mean()) ** 2).sum())


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ: the Pearson correlation of the ranks, ties averaged; NaN when either side is constant."""
    ra, rb = rankdata(a) - (len(a) + 1) / 2, rankdata(b) - (len(b) + 1) / 2
    denominator = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denominator) if denominator > 0 else float("nan")


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random positive outscores a random negative."""
    return float(roc_auc_score(np.asarray(labels, dtype=bool), scores))


def demean_within(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each value minus the mean of its group (the fixed-effects within transform)."""
    values = np.asarray(values, float)
    _, index = np.unique(groups, return_inverse=True)
    means = np.bincount(index, weights=values) / np.bincount(index)
    return values - means[index]


def _repeated(groups: np.ndarray) -> np.ndarray:
    """Rows whose group has at least two rows: a singleton has no within-group variation."""
    _, index, counts = np.unique(groups, return_inverse=True, return_counts=True)
    return counts[index] >= 2


def author_demeaned_spearman(scores: np.ndarray, outcome: np.ndarray, authors: np.ndarray) -> float:
    """Spearman of score vs outcome with author fixed effects: both demeaned within author.

    Authors with a single video are dropped: they have no within-author variation.
    """
    keep = _repeated(authors)
    scores, outcome, authors = np.asarray(scores)[keep], np.asarray(outcome)[keep], np.asarray(authors)[keep]
    return spearman(demean_within(scores, authors), demean_within(outcome, authors))


def top_decile_delta(scores: np.ndarray, outcome: np.ndarray, authors: np.ndarray) -> float:
    """Mean author-demeaned outcome of the top 10 % of scores minus that of the rest.

    A non-linearity check beside the rank correlation: does the extreme top behave like the bulk?
    Authors with a single video are dropped, as in `author_demeaned_spearman`.
    """
    keep = _repeated(authors)
    residual = demean_within(np.asarray(outcome)[keep], np.asarray(authors)[keep])
    top = np.zeros(len(residual), dtype=bool)
    top[np.argsort(-np.asarray(scores)[keep], kind="stable")[: max(1, round(0.1 * len(residual)))]] = True
    return _mean(residual[top]) - _mean(residual[~top])
