"""Likes: regression of log(1 + likes) from author statistics, from the embedding, and from both.

Feature sets: `author` = log(1 + followers, author hearts, author videos, the video's age in days at
observation), unknown values imputed with the train median; `content` = the embedding per `features`;
`combined` = both side by side. Each is standardised, then fitted with RidgeCV over alphas 10⁻² … 10⁴
(efficient leave-one-out on the train rows).
Ridge rather than gradient boosting: the embedding is wide, the train set can be small, SynthTok's likes
are log-linear in these inputs, and a linear read-out is what a frozen-embedding benchmark measures.
Splits: the dataset's author-disjoint train → test (no suffix), and time-forward (suffix `_time`): every
row with likes sorted by create_time, the oldest 80 % train and the newest 20 % test; authors recur there,
so author statistics carry over as they would in deployment.
Metrics: `r2_{author,content,combined}[_time]` and `spearman_…[_time]` on the test rows' log(1 + likes).
The author set (and so combined) is left out when no author statistic is known.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.impute import SimpleImputer
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tkds.benchmarks.features import column, embedding, in_split, metadata_features, missing_reason
from tkds.benchmarks.metrics import r2, spearman

NAME = "likes"
NEEDS = ("likes", "author_id")
ALPHAS = np.logspace(-2, 4, 13)
TIME_TRAIN_FRACTION = 0.8
MIN_TEST = 2


def skip_reason(table: pl.DataFrame) -> str | None:
    """Why the task cannot run on `table`, or None."""
    reason = missing_reason(table, NEEDS)
    if reason is not None:
        return reason
    known = table["likes"].is_not_null().to_numpy()
    if not (known & in_split(table, "train")).any():
        return "no train rows with likes"
    if (known & in_split(table, "test")).sum() < MIN_TEST:
        return f"fewer than {MIN_TEST} test rows with likes"
    return None


def feature_sets(table: pl.DataFrame, features: str) -> dict[str, np.ndarray]:
    """The regression inputs by name: author, content, combined; only content when no author stat is known."""
    content = embedding(table, features)
    author = metadata_features(table)
    if np.isnan(author).all():
        return {"content": content}
    return {"author": author, "content": content, "combined": np.hstack([author, content])}


def time_forward_split(table: pl.DataFrame, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Train and test masks: of the rows in `known`, the oldest 80 % by create_time and the newest 20 %."""
    # A stable sort: videos posted in the same second keep the table's order, so the cut is reproducible.
    order = np.argsort(table["create_time"].to_numpy(), kind="stable")
    ordered = order[known[order]]
    cut = round(TIME_TRAIN_FRACTION * len(ordered))
    train, test = np.zeros(table.height, dtype=bool), np.zeros(table.height, dtype=bool)
    train[ordered[:cut]], test[ordered[cut:]] = True, True
    return train, test


def run(table: pl.DataFrame, features: str, seed: int) -> dict[str, float]:
    """R² and Spearman of each feature set's ridge predictions, author-disjoint and time-forward."""
    if skip_reason(table) is not None:
        return {}
    y = np.log1p(table["likes"].fill_null(0).to_numpy().astype(float))
    known = table["likes"].is_not_null().to_numpy()
    splits = {"": (known & in_split(table, "train"), known & in_split(table, "test"))}
    if column(table, "create_time").null_count() == 0:
        splits["_time"] = time_forward_split(table, known)
    inputs = feature_sets(table, features)
    metrics = {}
    for suffix, (train, test) in splits.items():
        for name, x in inputs.items():
            model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), RidgeCV(alphas=ALPHAS))
            predicted = model.fit(x[train], y[train]).predict(x[test])
            metrics[f"r2_{name}{suffix}"] = r2(y[test], predicted)
            metrics[f"spearman_{name}{suffix}"] = spearman(y[test], predicted)
    return metrics
