"""Uncertainty and scale for the leaderboard: a paired bootstrap over test videos × seeds, and the
normalised score (the share of the floor-to-ceiling gap a row closes).

**Per-video outputs.** A cell may save what each task scored, video by video, in
`METHOD/seedK/outputs/FEATURES.parquet` (FEATURES: video, audio or audio-visual, as in metrics.json's rows),
one row per scored video and metric, with the columns (`OUTPUT_COLUMNS`)

    key      String   the video's id (the samples' `key`)
    task     String   classification, retrieval, originality, likes or hashtags
    metric   String   the metric's name in metrics.json (linear_top1, mAP, auroc_iforest, …)
    y_true   Float64  the truth (see the kinds below); null where the kind needs none
    y_score  Float64  the read-out's output for that video

A metric's kind (`metric_kind`, from its name) says how it is computed from those columns:

    accuracy  …top1       y_true the true class index, y_score the predicted one: mean(y_true == y_score)
    mean      mAP, R@k,   y_score the video's own value (its average precision as a query, its NDCG@5, …);
              NDCG@k, …   the metric is their mean; y_true is null
    r2        r2_…        y_true log(1 + likes), y_score the prediction: 1 − Σ(y − ŷ)² / Σ(y − ȳ)²
    auroc     auroc_…     y_true 1 for a planted outlier and 0 otherwise, y_score the anomaly score

so every headline metric is recomputed from them exactly. The videos are those the metric is computed on:
the test split for most, every video for originality.

**The bootstrap.** One resample draws n videos with replacement (the same indices for every row of a task,
which pairs them) and S seeds with replacement from each row's seeds; its statistic is the mean over the
drawn seeds of the metric on the drawn videos, the way the headline number is the mean over seeds. The
95 % interval is the 2.5th and 97.5th percentile over resamples; two rows differ significantly when the
interval of their difference, resample by resample, excludes 0. Any `metric(y_true, y_score)` works (a
loop over resamples); the kinds above take a vectorised path (a count matrix of the drawn videos, one
matrix product per seed), which gives the same numbers from the same draws.

On simulated tables sized like the cpu-small run (tests/test_bench_stats.py) a row's interval covers its
true value at the stated rate. The interval of a difference is wider than needed when a seed's luck on
single videos dominates (resampling videos and seeds together counts it more than once), and narrower
when whole seeds shift far apart: three seeds cannot measure that spread; more seeds can.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from tkds.errors import TkdsError

OUTPUTS_DIR = "outputs"
OUTPUT_COLUMNS = {
    "key": pl.String,
    "task": pl.String,
    "metric": pl.String,
    "y_true": pl.Float64,
    "y_score": pl.Float64,
}
RESAMPLES = 1000
LEVEL = 0.95
SEED_SLOTS = 100  # the most seeds a row may have (tkds bench's --seeds limit)
KINDS = (
    ("accuracy", re.compile(r"(.+_)?top1(_.+)?")),
    ("r2", re.compile(r"r2(_.+)?")),
    ("auroc", re.compile(r"auroc(_.+)?")),
    ("mean", re.compile(r"(mAP|R@\d+|NDCG@\d+|P@\d+)(_.+)?")),
)
Metric = Callable[[np.ndarray, np.ndarray], float]


def metric_kind(name: str) -> str | None:
    """The kind of a metric from its name (accuracy, r2, auroc, mean), or None: no interval for it."""
    return next((kind for kind, pattern in KINDS if pattern.fullmatch(name)), None)


@dataclass(frozen=True)
class Outputs:
    """One row's per-video outputs for one metric: keys (n,), y_true and y_score (seeds × n)."""

    keys: np.ndarray
    y_true: np.ndarray
    y_score: np.ndarray

    def on(self, keys: np.ndarray) -> Outputs:
        """The same outputs restricted to `keys` (a subset of ours), in their order."""
        index = np.searchsorted(self.keys, keys)
        return Outputs(keys, self.y_true[:, index], self.y_score[:, index])


@dataclass(frozen=True)
class Draws:
    """The resamples: video indices (B × n) and, per seed slot, a uniform number (B × SEED_SLOTS) that
    picks a seed among a row's S as floor(u · S), so rows with as many seeds draw the same ones."""

    videos: np.ndarray
    seeds: np.ndarray

    def seed_index(self, n_seeds: int) -> np.ndarray:
        if not 1 <= n_seeds <= SEED_SLOTS:
            raise TkdsError(f"a bootstrap takes 1 to {SEED_SLOTS} seeds per row, not {n_seeds}")
        return np.minimum((self.seeds[:, :n_seeds] * n_seeds).astype(np.int64), n_seeds - 1)

    def counts(self) -> np.ndarray:
        """How often each video is drawn in each resample (B × n)."""
        b, n = self.videos.shape
        offsets = self.videos + (np.arange(b, dtype=np.int64) * n)[:, None]
        return np.bincount(offsets.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)


def draws(n_videos: int, resamples: int = RESAMPLES, seed: int = 0) -> Draws:
    """Seeded resamples of `n_videos` videos (and of any row's seeds): the same for the same arguments."""
    if n_videos < 1 or resamples < 1:
        raise TkdsError(f"a bootstrap needs videos and resamples, not {n_videos} and {resamples}")
    rng = np.random.default_rng(seed)
    videos = rng.integers(0, n_videos, (resamples, n_videos), dtype=np.int32)
    return Draws(videos, rng.random((resamples, SEED_SLOTS)))


def _kind_function(kind: str) -> Metric:
    from tkds.benchmarks.metrics import auroc, r2

    return {
        "accuracy": lambda t, s: float(np.mean(t == s)),
        "mean": lambda t, s: float(np.mean(s)),
        "r2": r2,
        "auroc": auroc,
    }[kind]


def point(outputs: Outputs, metric: str | Metric) -> float:
    """The metric on every video, mean over seeds: the headline number."""
    function = _kind_function(metric) if isinstance(metric, str) else metric
    return float(np.mean([function(t, s) for t, s in zip(outputs.y_true, outputs.y_score, strict=True)]))


def per_seed(outputs: Outputs, metric: str | Metric, drawn: Draws) -> np.ndarray:
    """The metric of each seed on each resample of the videos (B × seeds)."""
    if isinstance(metric, str):
        return _FAST[metric](outputs, drawn.counts())
    values = np.empty((drawn.videos.shape[0], len(outputs.y_score)))
    for s, (truth, score) in enumerate(zip(outputs.y_true, outputs.y_score, strict=True)):
        for b, index in enumerate(drawn.videos):
            values[b, s] = metric(truth[index], score[index])
    return values


def _mean_fast(outputs: Outputs, counts: np.ndarray) -> np.ndarray:
    return counts @ outputs.y_score.T / counts.shape[1]


def _accuracy_fast(outputs: Outputs, counts: np.ndarray) -> np.ndarray:
    return counts @ (outputs.y_true == outputs.y_score).T.astype(np.float64) / counts.shape[1]


def _r2_fast(outputs: Outputs, counts: np.ndarray) -> np.ndarray:
    n = counts.shape[1]
    y, residual = outputs.y_true, outputs.y_true - outputs.y_score
    total = counts @ (y**2).T - (counts @ y.T) ** 2 / n
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 - (counts @ (residual**2).T) / total


def _auroc_fast(outputs: Outputs, counts: np.ndarray) -> np.ndarray:
    """Weighted Mann–Whitney: per score level, the drawn negatives below it plus half of those tied."""
    values = np.empty((counts.shape[0], len(outputs.y_score)))
    for s, (truth, score) in enumerate(zip(outputs.y_true, outputs.y_score, strict=True)):
        order = np.argsort(score, kind="stable")
        _, starts = np.unique(score[order], return_index=True)
        positive = truth[order] > 0.5
        w = counts[:, order]
        pos = np.add.reduceat(w * positive, starts, axis=1)
        neg = np.add.reduceat(w * ~positive, starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg
        with np.errstate(divide="ignore", invalid="ignore"):
            values[:, s] = (pos * (below + neg / 2)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))
    return values


_FAST = {"mean": _mean_fast, "accuracy": _accuracy_fast, "r2": _r2_fast, "auroc": _auroc_fast}


def replicates(outputs: Outputs, metric: str | Metric, drawn: Draws) -> np.ndarray:
    """The bootstrap distribution (B,): per resample, the mean over the drawn seeds of the per-seed metric
    on the drawn videos."""
    values = per_seed(outputs, metric, drawn)
    return np.take_along_axis(values, drawn.seed_index(values.shape[1]), axis=1).mean(axis=1)


def interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float] | None:
    """The percentile interval of a bootstrap distribution; None when the metric is undefined in some
    resample (a constant truth, a class absent), so no honest interval exists."""
    if not np.isfinite(samples).all():
        return None
    low, high = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


@dataclass(frozen=True)
class Difference:
    """Row a minus row b on the same resamples: the point difference, its interval, and whether it
    excludes 0."""

    diff: float
    low: float
    high: float

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


def difference(a: np.ndarray, b: np.ndarray, diff: float, level: float = LEVEL) -> Difference | None:
    """The paired difference of two rows' bootstrap distributions, drawn from the same resamples."""
    with np.errstate(invalid="ignore"):  # inf − inf where R² is undefined in a resample: no interval then
        bounds = interval(a - b, level)
    return None if bounds is None else Difference(diff, *bounds)


def compare(a: Outputs, b: Outputs, metric: str | Metric, resamples: int = RESAMPLES,
            seed: int = 0) -> Difference | None:  # fmt: skip
    """The paired bootstrap of a − b on the videos both rows scored; None when they share none."""
    common = np.intersect1d(a.keys, b.keys)
    if not common.size:
        return None
    a, b = a.on(common), b.on(common)
    drawn = draws(common.size, resamples, seed)
    return difference(replicates(a, metric, drawn), replicates(b, metric, drawn),
                      point(a, metric) - point(b, metric))  # fmt: skip


def normalised(score: float | None, floor: float | None, ceiling: float | None) -> tuple[float | None, str]:
    """(score − floor) / (ceiling − floor), the share of the floor-to-ceiling gap a row closes: 0 at the
    floor, 1 at the ceiling; None with the reason when a level is missing or the gap is not positive."""
    if score is None:
        return None, "no score"
    if floor is None:
        return None, "no floor row (a random encoder) on this task"
    if ceiling is None:
        return None, "no ceiling row (supervised, or SynthTok's Bayes-optimal) on this task"
    if ceiling <= floor:
        return None, f"the ceiling ({ceiling:.3f}) is not above the floor ({floor:.3f})"
    return (score - floor) / (ceiling - floor), ""


def read_outputs(paths: list[Path], task: str, metric: str) -> Outputs | None:
    """One row's outputs for `metric` from its seeds' files (one per seed), or None when no file has it.

    TkdsError (naming the file) when a file is not a table of OUTPUT_COLUMNS, a key repeats, a value is
    not finite, or the seeds scored different videos."""
    keys, truths, scores = None, [], []
    for path in paths:
        try:
            table = pl.read_parquet(path, columns=list(OUTPUT_COLUMNS))
        except Exception as error:  # polars raises many kinds for a bad file
            raise TkdsError(f"{path} is not an outputs table ({type(error).__name__}); delete it and re-run "
                            "the cell") from None  # fmt: skip
        if dict(table.schema) != OUTPUT_COLUMNS:
            raise TkdsError(f"{path} has columns {dict(table.schema)}, not {OUTPUT_COLUMNS}; delete it and "
                            "re-run the cell")  # fmt: skip
        table = table.filter((pl.col("task") == task) & (pl.col("metric") == metric)).sort("key")
        if table.is_empty():
            continue
        if table["key"].null_count() or table["key"].n_unique() != table.height:
            raise TkdsError(f"{path}: {task} {metric} lists a video twice or without a key; re-run the cell")
        score = table["y_score"].to_numpy()
        truth = table["y_true"].fill_null(np.nan).to_numpy()
        if not np.isfinite(score).all() or (metric_kind(metric) != "mean" and not np.isfinite(truth).all()):
            raise TkdsError(f"{path}: {task} {metric} has a missing or infinite value; re-run the cell")
        found = table["key"].to_numpy()
        if keys is not None and not np.array_equal(keys, found):
            raise TkdsError(f"{path}: {task} {metric} scored other videos than the row's other seeds; "
                            "re-run the cells on the same shards")  # fmt: skip
        keys = found
        truths.append(truth)
        scores.append(score)
    if keys is None:
        return None
    return Outputs(keys, np.vstack(truths), np.vstack(scores))
