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
Per-video outputs: each counted test video's value of each metric.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tkds.benchmarks.features import (
    KNN_TEMPERATURE,
    ROW_BLOCK_ENTRIES,
    cosine_neighbours,
    embedding,
    in_split,
    missing_reason,
)
from tkds.benchmarks.metrics import (
    ndcg_at_k,
    ndcg_at_k_per_query,
    precision_at_k,
    precision_at_k_per_query,
    recall_at_k_multilabel,
    recall_at_k_per_query,
)
from tkds.benchmarks.tasks.per_video import Outputs, record

NAME = "hashtags"
NEEDS = ("hashtags",)
K_NEIGHBOURS = 20
AT = 5
HEAD_MIN_USES = 5
FREQUENT_MIN_USES = 10
VOCABULARY_MAX = 5000
C = 1.0
METRICS = (("P", precision_at_k), ("R", recall_at_k_multilabel), ("NDCG", ndcg_at_k))
# The same metrics per test video with a true tag; each of METRICS is their mean.
PER_VIDEO = (("P", precision_at_k_per_query), ("R", recall_at_k_per_query), ("NDCG", ndcg_at_k_per_query))


def _tag_matrix(tags: list[list[str] | None], vocabulary: dict[str, int]) -> np.ndarray:
    """Multi-hot (videos, vocabulary) of each video's known tags."""
    matrix = np.zeros((len(tags), len(vocabulary)), dtype=bool)
    for row, video_tags in enumerate(tags):
        for tag in video_tags or ():
            if tag in vocabulary:
                matrix[row, vocabulary[tag]] = True
    return matrix


def _vocabulary(table: pl.DataFrame) -> tuple[list[list[str] | None], dict[str, int]]:
    """The train videos' tag lists, and the vocabulary: their tags by uses (then name), the most used
    VOCABULARY_MAX."""
    train_tags = table["hashtags"].filter(in_split(table, "train")).to_list()
    uses = Counter(tag for tags in train_tags for tag in tags or ())
    kept = sorted(uses, key=lambda tag: (-uses[tag], tag))[:VOCABULARY_MAX]
    return train_tags, {tag: i for i, tag in enumerate(kept)}


def train_test(table: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The train and test tag matrices over the train vocabulary, and the test rows with a known tag."""
    train_tags, vocabulary = _vocabulary(table)
    test_truth = _tag_matrix(table["hashtags"].filter(in_split(table, "test")).to_list(), vocabulary)
    return _tag_matrix(train_tags, vocabulary), test_truth, test_truth.any(axis=1)


@dataclass(frozen=True)
class HashtagsReadout:
    """The kNN vote over the train videos' tags: what `tkds serve` suggests hashtags with.

    The tags are stored sparse (a train video's tag columns are tag_columns[tag_rows[i]:tag_rows[i + 1]]):
    a dense (train videos × vocabulary) matrix would take 1.2 GB at 232,000 × 5,000.
    """

    features: str
    vocabulary: np.ndarray  # (tags,) str, by train uses
    train_x: np.ndarray  # (train videos, d) the embedding per `features`
    tag_rows: np.ndarray  # (train videos + 1,) int64 offsets into tag_columns
    tag_columns: np.ndarray  # int64 vocabulary positions
    k: int

    def neighbours(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indices and cosines of each row's k nearest train videos."""
        return cosine_neighbours(x, self.train_x, self.k)

    def votes(self, indices: np.ndarray, sims: np.ndarray) -> np.ndarray:
        """(rows, tags) weighted kNN votes from `neighbours`' output: Σ exp(cos / T) over the neighbours
        that used each tag, added rank by rank as `features.neighbour_vote` adds them (so bit for bit)."""
        weights = np.exp(sims / KNN_TEMPERATURE)
        scores = np.zeros((indices.shape[0], len(self.vocabulary)))
        for rank in range(indices.shape[1]):
            starts, ends = self.tag_rows[indices[:, rank]], self.tag_rows[indices[:, rank] + 1]
            counts = ends - starts
            rows = np.repeat(np.arange(len(indices)), counts)
            # Each row's neighbour holds each tag once, so no (row, tag) repeats within a rank.
            positions = np.repeat(ends - counts.cumsum(), counts) + np.arange(counts.sum())
            scores[rows, self.tag_columns[positions]] += np.repeat(weights[:, rank], counts)
        return scores

    def shares(self, x: np.ndarray) -> np.ndarray:
        """(rows, tags): each tag's votes over the neighbours' total weight, the similarity-weighted share
        of the k nearest train videos that used it (0–1); the same order as the votes."""
        indices, sims = self.neighbours(x)
        return self.votes(indices, sims) / np.exp(sims / KNN_TEMPERATURE).sum(axis=1, keepdims=True)


def fit_readout(table: pl.DataFrame, features: str, seed: int) -> HashtagsReadout | None:
    """The kNN read-out on the train videos; None when the task cannot run. `seed` is unused."""
    return None if skip_reason(table) is not None else _fit(table, features, embedding(table, features))


def _fit(table: pl.DataFrame, features: str, x: np.ndarray) -> HashtagsReadout:
    train_tags, vocabulary = _vocabulary(table)
    columns = [sorted({vocabulary[t] for t in tags or () if t in vocabulary}) for tags in train_tags]
    rows = np.concatenate([[0], np.cumsum([len(c) for c in columns])]).astype(np.int64)
    flat = np.array([c for video in columns for c in video], dtype=np.int64)
    names = np.array(list(vocabulary), dtype=str) if vocabulary else np.zeros(0, dtype="<U1")
    return HashtagsReadout(features, names, x[in_split(table, "train")], rows, flat, K_NEIGHBOURS)


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


def run(table: pl.DataFrame, features: str, seed: int, outputs: Outputs = None) -> dict[str, float]:
    """P@5, R@5 and NDCG@5 of the kNN vote (`fit_readout`'s) and the linear head, on all, frequent and
    rare tags; each counted test video's values appended to `outputs` when given."""
    if skip_reason(table) is not None:
        return {}
    x = embedding(table, features)
    readout = _fit(table, features, x)
    y_train, truth, answerable = train_test(table)
    x_train = readout.train_x
    test_rows = np.flatnonzero(in_split(table, "test"))[answerable]
    x_test = x[test_rows]
    truth = truth[answerable]
    neighbours = readout.neighbours(x_test)
    head = _head(x_train, y_train, seed)
    frequent = y_train.sum(axis=0) >= FREQUENT_MIN_USES
    subsets = {"": np.ones_like(frequent), "_frequent": frequent, "_rare": ~frequent}
    # Scores are (test videos × vocabulary): made and scored a block of test videos at a time. Each
    # metric is a mean over the videos with a true tag in its subset: Σ of block means × block counts.
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    per_video: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    block = max(1, ROW_BLOCK_ENTRIES // 4 // y_train.shape[1])
    for start in range(0, len(x_test), block):
        rows = slice(start, start + block)
        scores = {"knn": readout.votes(neighbours[0][rows], neighbours[1][rows])}
        if head is not None:
            scores["head"] = _head_scores(*head, x_test[rows], y_train.shape[1])
        for method, score in scores.items():
            for suffix, tags in subsets.items():
                counted = truth[rows][:, tags].any(axis=1)
                scored = int(counted.sum())
                if not scored:
                    continue
                at = (score[:, tags], truth[rows][:, tags], AT)
                for name, metric in PER_VIDEO:
                    key = f"{name}@{AT}_{method}{suffix}"
                    values = metric(*at)
                    sums[key] = sums.get(key, 0.0) + float(values.mean()) * scored
                    counts[key] = counts.get(key, 0) + scored
                    if outputs is not None:
                        per_video.setdefault(key, []).append((test_rows[rows][counted], values))
    for key, blocks in per_video.items():
        record(outputs, table, np.concatenate([b[0] for b in blocks]), key, None,
               np.concatenate([b[1] for b in blocks]))  # fmt: skip
    return {key: sums[key] / counts[key] for key in sums}
