"""Hashtags: rank tags for each test video from its embedding alone; the caption is never an input.

- knn: weighted kNN vote (k = 20, cosine, weights exp(cos / 0.07)) over the tags of the nearest train videos;
- head: one-vs-rest logistic regression (C = 1, standardised features), one per tag used by at least 5
  train videos and not by all; other tags score 0 and so rank last. No such tag: no head metrics.
The vocabulary is the train videos' tags, the VOCABULARY_MAX most used when there are more (dense tag
matrices must fit in memory on a real crawl): a test tag outside it cannot be predicted and is dropped
from the truth, and a test video left with no tag is skipped. Tags split by train use:
frequent = used by ≥ 10 train videos, rare = the rest. For a subset, scores and truth are restricted to
its tags, and only test videos with a true tag in it count.
Metrics: P@5, R@5 (multi-label) and NDCG@5 per method, overall and per subset:
`P@5_knn`, `R@5_head`, `NDCG@5_knn_frequent`, `P@5_head_rare`, …
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tkds.benchmarks.features import (
    ROW_BLOCK_ENTRIES,
    cosine_neighbours,
    embedding,
    in_split,
    missing_reason,
    neighbour_vote,
)
from tkds.benchmarks.metrics import ndcg_at_k, precision_at_k, recall_at_k_multilabel

NAME = "hashtags"
NEEDS = ("hashtags",)
K_NEIGHBOURS = 20
AT = 5
HEAD_MIN_USES = 5
FREQUENT_MIN_USES = 10
VOCABULARY_MAX = 5000
C = 1.0
METRICS = (("P", precision_at_k), ("R", recall_at_k_multilabel), ("NDCG", ndcg_at_k))


def _tag_matrix(tags: list[list[str] | None], vocabulary: dict[str, int]) -> np.ndarray:
    """Multi-hot (videos, vocabulary) of each video's known tags."""
    matrix = np.zeros((len(tags), len(vocabulary)), dtype=bool)
    for row, video_tags in enumerate(tags):
        for tag in video_tags or ():
            if tag in vocabulary:
                matrix[row, vocabulary[tag]] = True
    return matrix


def train_test(table: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The train and test tag matrices over the train vocabulary, and the test rows with a known tag."""
    train_tags = table["hashtags"].filter(in_split(table, "train")).to_list()
    uses = Counter(tag for tags in train_tags for tag in tags or ())
    kept = sorted(uses, key=lambda tag: (-uses[tag], tag))[:VOCABULARY_MAX]
    vocabulary = {tag: i for i, tag in enumerate(kept)}
    test_truth = _tag_matrix(table["hashtags"].filter(in_split(table, "test")).to_list(), vocabulary)
    return _tag_matrix(train_tags, vocabulary), test_truth, test_truth.any(axis=1)


def skip_reason(table: pl.DataFrame) -> str | None:
    """Why the task cannot run on `table`, or None."""
    reason = missing_reason(table, NEEDS)
    if reason is not None:
        return reason
    _, _, answerable = train_test(table)
    if not answerable.any():
        return "no test video has a hashtag that a train video also has"
    return None


def _head(x_train: np.ndarray, y_train: np.ndarray, seed: int) -> tuple[object, np.ndarray] | None:
    """The fitted one-vs-rest head and the tags it scores, or None when no tag has enough uses."""
    uses = y_train.sum(axis=0)
    head = np.flatnonzero((uses >= HEAD_MIN_USES) & (uses < len(y_train)))
    if not head.size:
        return None
    model = make_pipeline(
        StandardScaler(), OneVsRestClassifier(LogisticRegression(C=C, max_iter=2000, random_state=seed))
    )
    return model.fit(x_train, y_train[:, head]), head


def _head_scores(model: object, head: np.ndarray, x_test: np.ndarray, vocabulary: int) -> np.ndarray:
    """Per-tag probabilities of the head, 0 outside the head's tags."""
    scores = np.zeros((len(x_test), vocabulary))
    probabilities = model.predict_proba(x_test)
    # With a single head tag the target is one column, which scikit-learn treats as binary: (n, 2).
    scores[:, head] = probabilities[:, 1:] if head.size == 1 else probabilities
    return scores


def run(table: pl.DataFrame, features: str, seed: int) -> dict[str, float]:
    """P@5, R@5 and NDCG@5 of the kNN vote and the linear head, on all, frequent and rare tags."""
    if skip_reason(table) is not None:
        return {}
    y_train, truth, answerable = train_test(table)
    x = embedding(table, features)
    x_train, x_test = x[in_split(table, "train")], x[in_split(table, "test")][answerable]
    truth = truth[answerable]
    neighbours = cosine_neighbours(x_test, x_train, K_NEIGHBOURS)
    head = _head(x_train, y_train, seed)
    frequent = y_train.sum(axis=0) >= FREQUENT_MIN_USES
    subsets = {"": np.ones_like(frequent), "_frequent": frequent, "_rare": ~frequent}
    # Scores are (test videos × vocabulary): made and scored a block of test videos at a time. Each
    # metric is a mean over the videos with a true tag in its subset: Σ of block means × block counts.
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    block = max(1, ROW_BLOCK_ENTRIES // 4 // y_train.shape[1])
    for start in range(0, len(x_test), block):
        rows = slice(start, start + block)
        scores = {"knn": neighbour_vote(neighbours[0][rows], neighbours[1][rows], y_train)}
        if head is not None:
            scores["head"] = _head_scores(*head, x_test[rows], y_train.shape[1])
        for method, score in scores.items():
            for suffix, tags in subsets.items():
                scored = int(truth[rows][:, tags].any(axis=1).sum())
                if not scored:
                    continue
                at = (score[:, tags], truth[rows][:, tags], AT)
                for name, metric in METRICS:
                    key = f"{name}@{AT}_{method}{suffix}"
                    sums[key] = sums.get(key, 0.0) + metric(*at) * scored
                    counts[key] = counts.get(key, 0) + scored
    return {key: sums[key] / counts[key] for key in sums}
