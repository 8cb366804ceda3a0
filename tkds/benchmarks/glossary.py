"""What each leaderboard metric means, which way is better, and the levels that need no model at all.

`describe(task, metric)` reads a metric's name (`linear_top1`, `mAP_excl`, `auroc_iforest_sound`,
`r2_combined_time`, `r2_pca_gbm`, `NDCG@5_knn_rare`, …) into a sentence and a direction.
`baselines(metadata)` computes, on the very rows the tasks score, the chance level (a random guess or
ranking) and the majority level (always the most frequent train class, or the most used train tags for
every video) of each metric where they are defined.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import NamedTuple

import numpy as np
import polars as pl

from tkds.benchmarks.features import in_split
from tkds.benchmarks.tasks import hashtags as hashtag_task

HIGHER, NONE = "higher is better", "no better side: a finding, not a score"


class Meaning(NamedTuple):
    text: str
    direction: str  # HIGHER or NONE


SPLITS = {"": "author-disjoint test split", "_time": "time-forward split (newest 20 % of videos)"}
COHORTS = {"": "over all videos", "_sound": "within sound cohorts", "_hashtag": "within hashtag cohorts"}
DETECTORS = {
    "iforest": "IsolationForest",
    "lof": "LocalOutlierFactor",
    "knn": "mean kNN distance",
    "iforest_pca": "IsolationForest on standardised PCA-16 features",
    "knn_pca": "mean kNN distance on standardised PCA-16 features",
}
LIKES_INPUTS = {
    "author": "author counts and video age",
    "content": "the embedding alone",
    "combined": "author counts, age and the embedding",
}
PCA_MODELS = {"ridge": "ridge", "gbm": "gradient-boosted trees"}
TAG_SUBSETS = {"": "all tags", "_frequent": "tags used by ≥ 10 train videos", "_rare": "rarer tags"}
PATTERNS: tuple[tuple[str, re.Pattern[str], object], ...] = (
    (
        "classification",
        re.compile(r"(linear|knn)_(top1|macro_f1)"),
        lambda m: Meaning(
            ("accuracy (top-1)" if m[2] == "top1" else "macro F1")
            + (" of a linear probe" if m[1] == "linear" else " of a 20-NN vote")
            + " on the test split",
            HIGHER,
        ),
    ),
    (
        "retrieval",
        re.compile(r"(mAP|R@(\d+))(_excl)?"),
        lambda m: Meaning(
            (
                "mean average precision of each test query's ranking of the train gallery"
                if m[1] == "mAP"
                else f"share of test queries with a relevant train video in their top {m[2]}"
            )
            + " (relevant: same label)"
            + ("; videos of the same sound or author removed from the gallery" if m[3] else ""),
            HIGHER,
        ),
    ),
    (
        "originality",
        re.compile(
            r"(auroc|spearman_truth|spearman|top_decile_delta)_(iforest_pca|knn_pca|iforest|lof|knn)(_sound|_hashtag)?"
        ),
        lambda m: Meaning(
            {
                "auroc": "AUROC of the score against the planted outliers",
                "spearman_truth": "Spearman of the score against the true originality",
                "spearman": "Spearman of the score against log likes, within author",
                "top_decile_delta": "log likes of the top 10 % by score minus the rest, within author",
            }[m[1]]
            + f" ({DETECTORS[m[2]]}, {COHORTS[m[3] or '']})",
            HIGHER if m[1] in ("auroc", "spearman_truth") else NONE,
        ),
    ),
    (
        "likes",
        re.compile(r"(r2|spearman)_(author|content|combined)(_time)?"),
        lambda m: Meaning(
            ("R²" if m[1] == "r2" else "Spearman")
            + f" of log(1 + likes) predicted from {LIKES_INPUTS[m[2]]}, {SPLITS[m[3] or '']}",
            HIGHER,
        ),
    ),
    (
        "likes",
        re.compile(r"r2_pca_(ridge|gbm)(_time)?"),
        lambda m: Meaning(
            f"R² of log(1 + likes) predicted by {PCA_MODELS[m[1]]} from author counts, age and the embedding "
            f"reduced by PCA to the k dimensions (2–16) best on validation, {SPLITS[m[2] or '']}",
            HIGHER,
        ),
    ),
    (
        "hashtags",
        re.compile(r"(P|R|NDCG)@(\d+)_(knn|head)(_frequent|_rare)?"),
        lambda m: Meaning(
            {"P": "precision", "R": "recall", "NDCG": "NDCG"}[m[1]]
            + f" at {m[2]} of the tags ranked by "
            + ("a 20-NN vote" if m[3] == "knn" else "per-tag linear heads")
            + f", {TAG_SUBSETS[m[4] or '']}",
            HIGHER,
        ),
    ),
)


def describe(task: str, metric: str) -> Meaning:
    """The meaning and direction of `metric` of `task`; a name it cannot read says so."""
    for pattern_task, pattern, meaning in PATTERNS:
        if pattern_task == task and (match := pattern.fullmatch(metric)):
            return meaning(match)
    return Meaning(metric, NONE)


def baselines(metadata: pl.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """{"chance": {task: {metric: value}}, "majority": {...}} on the rows the tasks score."""
    chance: dict[str, dict[str, float]] = {}
    majority: dict[str, dict[str, float]] = {}
    for task, values in _label_levels(metadata).items():
        for level, metrics in values.items():
            {"chance": chance, "majority": majority}[level].setdefault(task, {}).update(metrics)
    for cohort in COHORTS:
        for detector in DETECTORS:
            chance.setdefault("originality", {})[f"auroc_{detector}{cohort}"] = 0.5
    for inputs in LIKES_INPUTS:
        for split in SPLITS:
            chance.setdefault("likes", {})[f"r2_{inputs}{split}"] = 0.0
    for model in PCA_MODELS:
        for split in SPLITS:
            chance.setdefault("likes", {})[f"r2_pca_{model}{split}"] = 0.0
    majority["hashtags"] = _frequent_tags(metadata)
    return {"chance": chance, "majority": majority}


def _label_levels(metadata: pl.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    if "label" not in metadata.columns:
        return {}
    labels = metadata["label"].to_numpy()
    known = metadata["label"].is_not_null().to_numpy()
    train, test = labels[in_split(metadata, "train") & known], labels[in_split(metadata, "test") & known]
    if not len(train) or not len(test):
        return {}
    classes = len(set(train) | set(test))
    top = Counter(train.tolist()).most_common(1)[0][0]
    share = float(np.mean(test == top))
    majority_f1 = 2 * share / (1 + share) / len(set(test) | {top}) if share else 0.0
    train_share = {label: count / len(train) for label, count in Counter(train.tolist()).items()}
    relevant = np.array([train_share.get(label, 0.0) for label in test.tolist()])
    answerable = relevant[relevant > 0]
    retrieval = {"mAP": float(answerable.mean())} if answerable.size else {}
    for k in (1, 5, 10, 20):
        if answerable.size:
            retrieval[f"R@{k}"] = float(np.mean(1 - (1 - answerable) ** k))
    return {
        "classification": {
            "chance": {"linear_top1": 1 / classes, "knn_top1": 1 / classes},
            "majority": {
                "linear_top1": share,
                "knn_top1": share,
                "linear_macro_f1": majority_f1,
                "knn_macro_f1": majority_f1,
            },
        },
        "retrieval": {"chance": retrieval},
    }


def _frequent_tags(metadata: pl.DataFrame) -> dict[str, float]:
    """P/R/NDCG@5 of ranking every test video's tags by their train use, the same list for all."""
    if hashtag_task.skip_reason(metadata) is not None:
        return {}
    y_train, truth, answerable = hashtag_task.train_test(metadata)
    scores = np.broadcast_to(y_train.sum(axis=0).astype(float), (int(answerable.sum()), y_train.shape[1]))
    truth, at = truth[answerable], hashtag_task.AT
    levels = {}
    for name, metric in hashtag_task.METRICS:
        value = float(metric(scores, truth, at))
        levels.update({f"{name}@{at}_knn": value, f"{name}@{at}_head": value})
    return levels
