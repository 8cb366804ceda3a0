"""Likes: regression of log(1 + likes) from author statistics, from the embedding, and from both.

Feature sets: `author` = log(1 + followers, author hearts, author videos, the video's age in days at
observation); `content` = the embedding per `features`; `combined` = both side by side. Each is fitted as
scikit-learn's SimpleImputer(median) → StandardScaler → RidgeCV(alphas 10⁻² … 10⁴) would fit it: unknown
values take the train median (a column unknown in every train row is dropped), columns are standardised
with the train rows, and the alpha is the one with the least leave-one-out squared error on the train rows
(ties to the smaller). The fit is that pipeline's own closed form, XᵀX (features × features) summed over
blocks of rows, so memory does not grow with the rows (tested against the pipeline to 1e-6).
Ridge rather than gradient boosting: the embedding is wide, the train set can be small, SynthTok's likes
are log-linear in these inputs, and a linear read-out is what a frozen-embedding benchmark measures.
Splits: the dataset's author-disjoint train → test (no suffix), and time-forward (suffix `_time`): every
row with likes sorted by create_time, the oldest 80 % train and the newest 20 % test; authors recur there,
so author statistics carry over as they would in deployment.
Metrics: `r2_{author,content,combined}[_time]` and `spearman_…[_time]` on the test rows' log(1 + likes).
The author set (and so combined) is left out when no author statistic is known.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from tkds.benchmarks.features import column, embedding, in_split, metadata_features, missing_reason
from tkds.benchmarks.metrics import r2, spearman

NAME = "likes"
NEEDS = ("likes", "author_id")
ALPHAS = np.logspace(-2, 4, 13)
TIME_TRAIN_FRACTION = 0.8
MIN_TEST = 2
# Rows of the float64 design matrix at a time: 8,192 × (512 + 4) × 8 bytes ≈ 34 MB for gpu-full's width.
ROW_BLOCK = 8192


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


def feature_sets(table: pl.DataFrame, features: str) -> dict[str, list[np.ndarray]]:
    """The regression inputs by name, each a list of (rows, columns) parts read side by side: author,
    content, combined; only content when no author stat is known. Parts are not copied into one matrix."""
    content = embedding(table, features)
    author = metadata_features(table)
    if np.isnan(author).all():
        return {"content": [content]}
    return {"author": [author], "content": [content], "combined": [author, content]}


def time_forward_split(table: pl.DataFrame, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Train and test masks: of the rows in `known`, the oldest 80 % by create_time and the newest 20 %."""
    # A stable sort: videos posted in the same second keep the table's order, so the cut is reproducible.
    order = np.argsort(table["create_time"].to_numpy(), kind="stable")
    ordered = order[known[order]]
    cut = round(TIME_TRAIN_FRACTION * len(ordered))
    train, test = np.zeros(table.height, dtype=bool), np.zeros(table.height, dtype=bool)
    train[ordered[:cut]], test[ordered[cut:]] = True, True
    return train, test


def _blocks(rows: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, len(rows), ROW_BLOCK):
        yield rows[start : start + ROW_BLOCK]


def _unknown_columns(part: np.ndarray) -> np.ndarray:
    """Which columns of `part` hold a NaN in some row."""
    unknown = np.zeros(part.shape[1], dtype=bool)
    for start in range(0, len(part), ROW_BLOCK):
        unknown |= np.isnan(part[start : start + ROW_BLOCK]).any(axis=0)
    return unknown


@dataclass(frozen=True)
class Standardiser:
    """SimpleImputer(median) then StandardScaler, fitted on train rows, applied a block of rows at a time."""

    parts: Sequence[np.ndarray]
    kept: np.ndarray  # columns with a known train value
    fill: np.ndarray  # the train median of each kept column
    mean: np.ndarray
    scale: np.ndarray

    def imputed(self, rows: np.ndarray) -> np.ndarray:
        """The parts' `rows` side by side as float64, kept columns only, unknowns at the train median."""
        x = np.hstack([part[rows] for part in self.parts]).astype(np.float64, copy=False)
        if not self.kept.all():
            x = x[:, self.kept]
        missing = np.isnan(x)
        if missing.any():
            x[missing] = np.broadcast_to(self.fill, x.shape)[missing]
        return x

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """`rows` imputed, centred and scaled."""
        x = self.imputed(rows)
        x -= self.mean
        x /= self.scale
        return x


def fit_standardiser(parts: Sequence[np.ndarray], train: np.ndarray) -> Standardiser:
    """Medians, means and scales of the `train` rows (indices), as SimpleImputer and StandardScaler fit."""
    columns = np.concatenate([np.arange(part.shape[1]) for part in parts])
    owner = np.concatenate([np.full(part.shape[1], i) for i, part in enumerate(parts)])
    unknown = np.concatenate([_unknown_columns(part) for part in parts])
    kept = np.ones(len(columns), dtype=bool)
    fill = np.zeros(len(columns))
    for j in np.flatnonzero(unknown):
        values = parts[owner[j]][train, columns[j]].astype(np.float64)
        values = values[~np.isnan(values)]
        kept[j] = values.size > 0
        fill[j] = np.median(values) if values.size else np.nan
    no_scaling = Standardiser(parts, kept, fill[kept], np.zeros(int(kept.sum())), np.ones(int(kept.sum())))
    mean = sum(no_scaling.imputed(rows).sum(axis=0) for rows in _blocks(train)) / len(train)
    centred = Standardiser(parts, kept, fill[kept], mean, np.ones_like(mean))
    variance = sum(np.square(centred.rows(rows)).sum(axis=0) for rows in _blocks(train)) / len(train)
    # StandardScaler's test for a constant column (its variance within rounding of zero): scale 1.
    eps = np.finfo(np.float64).eps
    constant = variance <= len(train) * eps * variance + (len(train) * mean * eps) ** 2
    return Standardiser(parts, kept, fill[kept], mean, np.where(constant, 1.0, np.sqrt(variance)))


def ridge_loo(
    parts: Sequence[np.ndarray],
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    alphas: np.ndarray = ALPHAS,
) -> tuple[np.ndarray, float]:
    """Predictions for the `test` rows and the chosen alpha of imputer → scaler → RidgeCV fitted on `train`
    (boolean masks over the rows of `parts`), with RidgeCV's efficient leave-one-out.

    RidgeCV's closed form on standardised X: XᵀX = V diag(s) Vᵀ, coefficients V (s + α)⁻¹ Vᵀ Xᵀ(y − ȳ),
    leave-one-out residual (yᵢ − ŷᵢ) / (1 − hᵢ − 1/n) with hᵢ = Σⱼ (xᵢ·vⱼ)² / (sⱼ + α); the 1/n is the
    intercept's share. Every pass over the rows is blockwise: memory is features², not rows × features.
    """
    train_rows, test_rows = np.flatnonzero(train), np.flatnonzero(test)
    scaler = fit_standardiser(parts, train_rows)
    y_mean = float(y[train_rows].mean())
    width = len(scaler.mean)
    gram, x_y = np.zeros((width, width)), np.zeros(width)
    for rows in _blocks(train_rows):
        x = scaler.rows(rows)
        gram += x.T @ x
        x_y += x.T @ (y[rows] - y_mean)
    eigenvalues, vectors = np.linalg.eigh(gram)
    inverse = 1.0 / (eigenvalues[:, None] + alphas[None, :])  # (features, alphas)
    projected = vectors.T @ x_y
    squared_errors = np.zeros(len(alphas))
    for rows in _blocks(train_rows):
        z = scaler.rows(rows) @ vectors
        fitted = z @ (inverse * projected[:, None])
        leverage = np.square(z) @ inverse + 1.0 / len(train_rows)
        squared_errors += np.square(((y[rows] - y_mean)[:, None] - fitted) / (1.0 - leverage)).sum(axis=0)
    best = int(np.argmin(squared_errors))  # the first of equal errors, as RidgeCV keeps it
    coefficients = vectors @ (inverse[:, best] * projected)
    predicted = np.concatenate([scaler.rows(rows) @ coefficients for rows in _blocks(test_rows)])
    return predicted + y_mean, float(alphas[best])


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
        for name, parts in inputs.items():
            predicted, _ = ridge_loo(parts, y, train, test)
            metrics[f"r2_{name}{suffix}"] = r2(y[test], predicted)
            metrics[f"spearman_{name}{suffix}"] = spearman(y[test], predicted)
    return metrics
