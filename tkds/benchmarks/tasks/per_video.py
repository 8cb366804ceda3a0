"""Per-video outputs of a task's metrics, the rows of tkds.benchmarks.stats' outputs tables less `task`
(which `run_tasks` adds): a built-in task's `run(…, outputs=[])` appends one frame per metric it records."""

from __future__ import annotations

import numpy as np
import polars as pl

Outputs = list[pl.DataFrame] | None


def record(outputs: Outputs, table: pl.DataFrame, rows: np.ndarray, metric: str,
           y_true: np.ndarray | None, y_score: np.ndarray) -> None:  # fmt: skip
    """Append `metric`'s outputs for the table's `rows` (indices) to `outputs`; nothing when it is None.
    y_true None: the metric's kind needs no truth (a mean of per-video values). A table without a `key`
    column names its videos by row number."""
    if outputs is None:
        return
    rows = np.asarray(rows, dtype=np.int64)
    named = "key" in table.columns
    keys = table["key"].cast(pl.String).gather(rows) if named else pl.Series(rows.astype(str))
    truth = np.full(len(rows), np.nan) if y_true is None else np.asarray(y_true, dtype=np.float64)
    frame = pl.DataFrame(
        {
            "key": keys.alias("key"),
            "metric": pl.Series("metric", [metric] * len(rows), dtype=pl.String),
            "y_true": pl.Series("y_true", truth, dtype=pl.Float64, nan_to_null=y_true is None),
            "y_score": pl.Series("y_score", np.asarray(y_score, dtype=np.float64), dtype=pl.Float64),
        }
    )
    outputs.append(frame)
