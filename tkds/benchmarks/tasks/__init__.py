"""The downstream tasks on frozen embeddings, one module each, behind one registry.

A task module has `NAME`, `NEEDS` (the metadata columns it reads), `skip_reason(table) -> str | None`
and `run(table, features, seed) -> dict[str, float]`, which returns {} when it has to skip.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import NamedTuple

import polars as pl

from tkds.benchmarks.features import feature_skip_reason
from tkds.benchmarks.tasks import classification, hashtags, likes, originality, retrieval
from tkds.errors import TkdsError

TASKS: dict[str, ModuleType] = {
    task.NAME: task for task in (classification, retrieval, originality, likes, hashtags)
}


class TaskResults(NamedTuple):
    metrics: dict[str, dict[str, float]]  # task name → metric name → value, for the tasks that ran
    skipped: dict[str, str]  # task name → why it did not run


def run_tasks(
    table: pl.DataFrame, names: Sequence[str] | None = None, features: str = "video", seed: int = 0
) -> TaskResults:
    """Run the named tasks (all when None) on `table` with `features`; a task that cannot run is skipped."""
    names = list(TASKS) if names is None else list(names)
    unknown = [name for name in names if name not in TASKS]
    if unknown:
        raise TkdsError(f"unknown task {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    results = TaskResults({}, {})
    no_features = feature_skip_reason(table, features)
    for name in names:
        reason = no_features or TASKS[name].skip_reason(table)
        metrics = TASKS[name].run(table, features, seed) if reason is None else {}
        if metrics:
            results.metrics[name] = metrics
        else:
            results.skipped[name] = reason or "no metric could be computed on these rows"
    return results
