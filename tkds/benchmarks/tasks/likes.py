"""Likes: regression of log(1 + likes) from author statistics, from the embedding, and from both.

Feature sets: `author` = log(1 + followers, author hearts, author videos, the video's age in days at
observation); `content` = the embedding per `features`; `combined` = both side by side. Each is fitted as
scikit-learn's SimpleImputer(median) → StandardScaler → RidgeCV(alphas 10⁻² … 10⁴) would fit it: unknown
values take the train median (a column unknown in every train row is dropped), columns are standardised
with the train rows, and the alpha is the one with the least leave-one-out squared error on the train rows
(ties to the smaller). The fit is that pipeline's own closed form, XᵀX (features × features) summed over
blocks of rows, so memory does not grow with the rows (tested against the pipeline to 1e-6).
These feature sets are read by ridge rather than gradient boosting: the embedding is wide, the train set
can be small, SynthTok's likes are log-linear in these inputs, and a linear read-out is what a
frozen-embedding benchmark measures.
Splits: the dataset's author-disjoint train → test (no suffix), and time-forward (suffix `_time`): every
row with likes sorted by create_time, the oldest 80 % train and the newest 20 % test; authors recur there,
so author statistics carry over as they would in deployment.
Metrics: `r2_{author,content,combined}[_time]` and `spearman_…[_time]` on the test rows' log(1 + likes).
The author set (and so combined) is left out when no author statistic is known.

Read-outs that cannot overfit a small train split (`r2_pca_ridge[_time]`, `r2_pca_gbm[_time]`): ridge on
the full embedding fits 128–512 coefficients from a few hundred train videos, so the embedding is first
reduced by PCA (centred, not scaled; the covariance fitted on the train rows, features × features summed
over blocks of rows) to k of `PCA_GRID` dimensions, capped at the width and the train rows less one. The
k scores sit beside the author statistics (imputed as the combined ridge imputes them; content alone when
none is known) and go into (a) `ridge_loo`, alpha by leave-one-out as above, and (b) scikit-learn's
HistGradientBoostingRegressor with fixed small settings (`GBM_SETTINGS`, random_state = seed), the kind
of model SMP-Video 2025's winning popularity entry used. Each read-out's k is the one with the least
squared error (so the best R²) on the validation rows with likes (split "val"; ties to the smaller k),
fitted on train alone; without such rows k is the smallest of the grid. On the time-forward split the
validation rows are the "val" videos among the oldest 80 %, left out of its fit. `r2_combined` stays
the headline and the served read-out.
Per-video outputs of the R² metrics: each test video's log(1 + likes) and its prediction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import polars as pl
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from tkds.benchmarks.features import (
    METADATA_COLUMNS,
    column,
    embedding,
    in_split,
    metadata_features,
    missing_reason,
)
from tkds.benchmarks.metrics import r2, spearman
from tkds.benchmarks.tasks.per_video import Outputs, record

NAME = "likes"
NEEDS = ("likes", "author_id")
ALPHAS = np.logspace(-2, 4, 13)
TIME_TRAIN_FRACTION = 0.8
MIN_TEST = 2
PCA_GRID = (2, 4, 8, 16)
# Small and fixed: no early stopping (it would hold out rows of its own), shallow trees, 100 rounds.
GBM_SETTINGS = {"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 15, "early_stopping": False}
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

    kept: np.ndarray  # columns with a known train value
    fill: np.ndarray  # the train median of each kept column (0 for a content column never unknown)
    mean: np.ndarray
    scale: np.ndarray

    def imputed(self, parts: Sequence[np.ndarray], rows: np.ndarray) -> np.ndarray:
        """The parts' `rows` side by side as float64, kept columns only, unknowns at the train median."""
        x = np.hstack([part[rows] for part in parts]).astype(np.float64, copy=False)
        if not self.kept.all():
            x = x[:, self.kept]
        missing = np.isnan(x)
        if missing.any():
            x[missing] = np.broadcast_to(self.fill, x.shape)[missing]
        return x

    def rows(self, parts: Sequence[np.ndarray], rows: np.ndarray) -> np.ndarray:
        """`rows` imputed, centred and scaled."""
        x = self.imputed(parts, rows)
        x -= self.mean
        x /= self.scale
        return x


def fit_standardiser(
    parts: Sequence[np.ndarray], train: np.ndarray, imputable: Sequence[int] = ()
) -> Standardiser:
    """Medians, means and scales of the `train` rows (indices), as SimpleImputer and StandardScaler fit.

    A column gets its train median when it is unknown in some row, and every column of the parts whose
    index is in `imputable` (the author statistics, which a new video may lack) gets one anyway; content
    columns never unknown are never imputed, so their medians are not computed.
    """
    columns = np.concatenate([np.arange(part.shape[1]) for part in parts])
    owner = np.concatenate([np.full(part.shape[1], i) for i, part in enumerate(parts)])
    unknown = np.concatenate([_unknown_columns(part) for part in parts])
    kept = np.ones(len(columns), dtype=bool)
    fill = np.zeros(len(columns))
    for j in np.flatnonzero(unknown | np.isin(owner, imputable)):
        values = parts[owner[j]][train, columns[j]].astype(np.float64)
        values = values[~np.isnan(values)]
        kept[j] = values.size > 0
        fill[j] = np.median(values) if values.size else np.nan
    width = int(kept.sum())
    no_scaling = Standardiser(kept, fill[kept], np.zeros(width), np.ones(width))
    mean = sum(no_scaling.imputed(parts, rows).sum(axis=0) for rows in _blocks(train)) / len(train)
    centred = Standardiser(kept, fill[kept], mean, np.ones_like(mean))
    variance = sum(np.square(centred.rows(parts, rows)).sum(axis=0) for rows in _blocks(train)) / len(train)
    # StandardScaler's test for a constant column (its variance within rounding of zero): scale 1.
    eps = np.finfo(np.float64).eps
    constant = variance <= len(train) * eps * variance + (len(train) * mean * eps) ** 2
    return Standardiser(kept, fill[kept], mean, np.where(constant, 1.0, np.sqrt(variance)))


@dataclass(frozen=True)
class Ridge:
    """A fitted imputer → scaler → ridge: log(1 + likes) = standardised(x) · coefficients + intercept."""

    standardiser: Standardiser
    coefficients: np.ndarray
    intercept: float  # the train rows' mean of log(1 + likes)
    alpha: float

    def predict(self, parts: Sequence[np.ndarray], rows: np.ndarray) -> np.ndarray:
        """Predicted log(1 + likes) of `rows` (indices into the parts), a block of rows at a time."""
        blocks = [self.standardiser.rows(parts, block) @ self.coefficients for block in _blocks(rows)]
        return (np.concatenate(blocks) if blocks else np.zeros(0)) + self.intercept


class RidgeFit(NamedTuple):
    predicted: np.ndarray  # of the test rows
    alpha: float
    ridge: Ridge


def ridge_loo(
    parts: Sequence[np.ndarray],
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    alphas: np.ndarray = ALPHAS,
    imputable: Sequence[int] = (),
) -> RidgeFit:
    """Predictions for the `test` rows, the chosen alpha and the fitted model of imputer → scaler →
    RidgeCV fitted on `train` (boolean masks over the rows of `parts`), with RidgeCV's efficient
    leave-one-out; `imputable` as `fit_standardiser` takes it.

    RidgeCV's closed form on standardised X: XᵀX = V diag(s) Vᵀ, coefficients V (s + α)⁻¹ Vᵀ Xᵀ(y − ȳ),
    leave-one-out residual (yᵢ − ŷᵢ) / (1 − hᵢ − 1/n) with hᵢ = Σⱼ (xᵢ·vⱼ)² / (sⱼ + α); the 1/n is the
    intercept's share. Every pass over the rows is blockwise: memory is features², not rows × features.
    """
    train_rows, test_rows = np.flatnonzero(train), np.flatnonzero(test)
    scaler = fit_standardiser(parts, train_rows, imputable)
    y_mean = float(y[train_rows].mean())
    width = len(scaler.mean)
    gram, x_y = np.zeros((width, width)), np.zeros(width)
    for rows in _blocks(train_rows):
        x = scaler.rows(parts, rows)
        gram += x.T @ x
        x_y += x.T @ (y[rows] - y_mean)
    eigenvalues, vectors = np.linalg.eigh(gram)
    inverse = 1.0 / (eigenvalues[:, None] + alphas[None, :])  # (features, alphas)
    projected = vectors.T @ x_y
    squared_errors = np.zeros(len(alphas))
    for rows in _blocks(train_rows):
        z = scaler.rows(parts, rows) @ vectors
        fitted = z @ (inverse * projected[:, None])
        leverage = np.square(z) @ inverse + 1.0 / len(train_rows)
        squared_errors += np.square(((y[rows] - y_mean)[:, None] - fitted) / (1.0 - leverage)).sum(axis=0)
    best = int(np.argmin(squared_errors))  # the first of equal errors, as RidgeCV keeps it
    ridge = Ridge(scaler, vectors @ (inverse[:, best] * projected), y_mean, float(alphas[best]))
    return RidgeFit(ridge.predict(parts, test_rows), ridge.alpha, ridge)


@dataclass(frozen=True)
class LikesReadout:
    """One feature set's fitted ridge with its score on the test rows: what `tkds serve` predicts likes with.

    The served one is the author-disjoint fit of `combined` (author statistics beside the embedding), or
    of `content` when the table knows no author statistic.
    """

    features: str  # the embedding: video, audio or audio-visual
    inputs: str  # author, content or combined
    ridge: Ridge
    residuals: np.ndarray  # the 10th, 50th and 90th percentile of the test rows' y − ŷ, log(1 + likes)
    r2: float
    spearman: float
    test_rows: int

    def parts(self, author: np.ndarray, content: np.ndarray) -> list[np.ndarray]:
        """The ridge's input parts: author statistics (`metadata_features`' columns, NaN where unknown),
        the embedding, or both, as `inputs` names them."""
        return {"author": [author], "content": [content], "combined": [author, content]}[self.inputs]

    def predict(self, author: np.ndarray, content: np.ndarray) -> np.ndarray:
        """log(1 + likes) of each row; unknown author statistics take the train medians."""
        return self.ridge.predict(self.parts(author, content), np.arange(len(content)))

    def median(self, name: str) -> float | None:
        """The train median an unknown author statistic (a METADATA_COLUMNS name) takes, or None when the
        ridge does not read it."""
        if self.inputs == "content":
            return None
        index = METADATA_COLUMNS.index(name)
        kept = self.ridge.standardiser.kept
        return float(np.expm1(self.ridge.standardiser.fill[kept[:index].sum()])) if kept[index] else None


PERCENTILES = (10, 50, 90)


def _readout(features: str, name: str, parts: list[np.ndarray], y: np.ndarray, train: np.ndarray,
             test: np.ndarray) -> tuple[LikesReadout, np.ndarray]:  # fmt: skip
    """Fit one feature set on `train` and score it on `test`; the read-out and its test predictions."""
    fit = ridge_loo(parts, y, train, test, ALPHAS, () if name == "content" else (0,))
    truth, predicted = y[test], fit.predicted
    residuals = np.percentile(truth - predicted, PERCENTILES)
    score = (r2(truth, predicted), spearman(truth, predicted))
    return LikesReadout(features, name, fit.ridge, residuals, *score, int(test.sum())), predicted


def _problem(table: pl.DataFrame) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """log(1 + likes) and the (train, test) masks of each split by suffix."""
    y = np.log1p(table["likes"].fill_null(0).to_numpy().astype(float))
    known = table["likes"].is_not_null().to_numpy()
    splits = {"": (known & in_split(table, "train"), known & in_split(table, "test"))}
    if column(table, "create_time").null_count() == 0:
        splits["_time"] = time_forward_split(table, known)
    return y, splits


def fit_readout(table: pl.DataFrame, features: str, seed: int) -> LikesReadout | None:
    """The served read-out: `combined` (or `content`) fitted on the author-disjoint train rows; None
    when the task cannot run. `seed` is unused (the fit is deterministic)."""
    if skip_reason(table) is not None:
        return None
    y, splits = _problem(table)
    inputs = feature_sets(table, features)
    name = "combined" if "combined" in inputs else "content"
    return _readout(features, name, inputs[name], y, *splits[""])[0]


def pca_scores(content: np.ndarray, train: np.ndarray, k: int) -> np.ndarray:
    """Every row's scores on the top `k` principal components of the `train` rows (a mask), float64
    (n, k); the covariance is summed over blocks of train rows, so memory is features², not rows ×
    features. A component's sign is fixed by its largest-magnitude loading being positive."""
    train_rows = np.flatnonzero(train)
    width = content.shape[1]
    mean = sum(content[rows].astype(np.float64).sum(axis=0) for rows in _blocks(train_rows)) / len(train_rows)
    covariance = np.zeros((width, width))
    for rows in _blocks(train_rows):
        x = content[rows].astype(np.float64) - mean
        covariance += x.T @ x
    _, vectors = np.linalg.eigh(covariance)
    top = vectors[:, ::-1][:, :k]
    top *= np.sign(top[np.abs(top).argmax(axis=0), np.arange(top.shape[1])])
    blocks = [(content[rows].astype(np.float64) - mean) @ top for rows in _blocks(np.arange(len(content)))]
    return np.concatenate(blocks)


class PcaFit(NamedTuple):
    predicted: np.ndarray  # of the test rows
    k: int  # the PCA dimensions chosen on validation


def _pca_grid(width: int, train_rows: int) -> list[int]:
    cap = max(1, min(width, train_rows - 1))
    return sorted({min(k, cap) for k in PCA_GRID})


def _fit(model: str, parts: list[np.ndarray], y: np.ndarray, train: np.ndarray, imputable: tuple[int, ...],
         seed: int) -> Callable[[np.ndarray], np.ndarray]:  # fmt: skip
    """`model` (ridge or gbm) fitted on the parts' `train` rows (a mask): rows (indices) → predictions."""
    if model == "ridge":
        ridge = ridge_loo(parts, y, train, np.zeros_like(train), ALPHAS, imputable).ridge
        return lambda rows: ridge.predict(parts, rows)
    imputer = fit_standardiser(parts, np.flatnonzero(train), imputable)
    gbm = HistGradientBoostingRegressor(**GBM_SETTINGS, random_state=seed)
    # One OpenMP thread: its threads spin-wait on a loaded machine (a 0.06 s fit took 14 s on 2 busy cores).
    with threadpool_limits(1, user_api="openmp"):
        gbm.fit(imputer.imputed(parts, np.flatnonzero(train)), y[train])

    def predict(rows: np.ndarray) -> np.ndarray:
        with threadpool_limits(1, user_api="openmp"):
            return gbm.predict(imputer.imputed(parts, rows)) if len(rows) else np.zeros(0)

    return predict


def pca_readouts(author: np.ndarray | None, content: np.ndarray, y: np.ndarray, train: np.ndarray,
                 val: np.ndarray, test: np.ndarray, seed: int) -> dict[str, PcaFit]:  # fmt: skip
    """The PCA ridge and PCA GBM (keys `ridge`, `gbm`) fitted on `train`, each with its k chosen on
    `val` (masks over the rows), and their predictions of the `test` rows. `author` None: content alone."""
    grid = _pca_grid(content.shape[1], int(train.sum()))
    scores = pca_scores(content, train, grid[-1])
    val_rows, test_rows = np.flatnonzero(val), np.flatnonzero(test)
    fits: dict[str, PcaFit] = {}
    for model in ("ridge", "gbm"):
        best: tuple[float, PcaFit] | None = None
        for k in grid if val.any() else grid[:1]:
            parts = [scores[:, :k]] if author is None else [author, scores[:, :k]]
            predict = _fit(model, parts, y, train, () if author is None else (0,), seed)
            error = float(np.square(y[val_rows] - predict(val_rows)).sum())
            if best is None or error < best[0]:
                best = (error, PcaFit(predict(test_rows), k))
        fits[model] = best[1]
    return fits


def run(table: pl.DataFrame, features: str, seed: int, outputs: Outputs = None) -> dict[str, float]:
    """R² and Spearman of each feature set's ridge predictions, author-disjoint and time-forward; each
    is the score of a `LikesReadout`, and the author-disjoint `combined` one is `fit_readout`'s; then
    the R² of the PCA ridge and PCA GBM (`pca_readouts`) on both splits. The R²s' per-video outputs are
    appended to `outputs` when given."""
    if skip_reason(table) is not None:
        return {}
    y, splits = _problem(table)
    inputs = feature_sets(table, features)
    metrics = {}
    for suffix, (train, test) in splits.items():
        for name, parts in inputs.items():
            readout, predicted = _readout(features, name, parts, y, train, test)
            metrics[f"r2_{name}{suffix}"] = readout.r2
            record(outputs, table, np.flatnonzero(test), f"r2_{name}{suffix}", y[test], predicted)
            metrics[f"spearman_{name}{suffix}"] = readout.spearman
    author = inputs["author"][0] if "author" in inputs else None
    known_val = table["likes"].is_not_null().to_numpy() & in_split(table, "val")
    for suffix, (train, test) in splits.items():
        # Time-forward: the "val" videos among the oldest choose k and are left out of the fit.
        val = known_val & train if suffix else known_val
        if not (train & ~val).any():  # nothing left to fit on: k by default instead
            val = np.zeros_like(val)
        fits = pca_readouts(author, inputs["content"][0], y, train & ~val, val, test, seed)
        for name, fit in fits.items():
            metrics[f"r2_pca_{name}{suffix}"] = r2(y[test], fit.predicted)
            record(outputs, table, np.flatnonzero(test), f"r2_pca_{name}{suffix}", y[test], fit.predicted)
    return metrics
