"""The downstream tasks on frozen embeddings, one module each, behind one registry.

A task module has `NAME`, `NEEDS` (the metadata columns it reads), `skip_reason(table) -> str | None`
and `run(table, features, seed) -> dict[str, float]`, which returns {} when it has to skip. TASKS holds
the built-ins; a plug-in task (tkds.plugins) is any module or object with the same four attributes, named
`package.module:Attr` or by a `tkds.tasks` entry point, and its results are keyed by that name.
A task whose `run` also takes the keyword `outputs` (every built-in does) appends to that list its
per-video outputs (`per_video.record`), from which the leaderboard's intervals are computed.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from types import ModuleType
from typing import NamedTuple

import polars as pl

from tkds.benchmarks.features import feature_skip_reason
from tkds.benchmarks.stats import OUTPUT_COLUMNS
from tkds.benchmarks.tasks import classification, hashtags, likes, originality, retrieval
from tkds.errors import TkdsError
from tkds.plugins import Registry

TASKS: dict[str, ModuleType] = {
    task.NAME: task for task in (classification, retrieval, originality, likes, hashtags)
}


def _not_a_task(obj: object) -> str | None:
    needs = getattr(obj, "NEEDS", None)
    if (
        not isinstance(getattr(obj, "NAME", None), str)
        or not isinstance(needs, tuple | list)
        or not all(isinstance(column, str) for column in needs)
        or not callable(getattr(obj, "skip_reason", None))
        or not callable(getattr(obj, "run", None))
    ):
        return (
            "is not a task: it needs NAME (a str), NEEDS (column names), skip_reason(table) and "
            "run(table, features, seed)"
        )
    return None


TASK_REGISTRY = Registry("task", "tkds.tasks", lambda: TASKS, _not_a_task, "mypkg.mytask:MyTask")


class TaskResults(NamedTuple):
    metrics: dict[str, dict[str, float]]  # task name → metric name → value, for the tasks that ran
    skipped: dict[str, str]  # task name → why it did not run
    outputs: pl.DataFrame | None = None  # per-video outputs (stats.OUTPUT_COLUMNS); None when none recorded


RECORDED = {name: dtype for name, dtype in OUTPUT_COLUMNS.items() if name != "task"}


def _checked(name: str, frame: object) -> pl.DataFrame:
    """A task's outputs frame, or a TkdsError naming the task when it is not one of RECORDED's columns."""
    if not isinstance(frame, pl.DataFrame) or dict(frame.schema) != RECORDED:
        found = dict(frame.schema) if isinstance(frame, pl.DataFrame) else type(frame).__name__
        raise TkdsError(f"task {name} recorded outputs {found}, not a DataFrame of {RECORDED}; build them "
                        "with tkds.benchmarks.tasks.per_video.record")  # fmt: skip
    return frame


def _takes_outputs(task: object) -> bool:
    try:
        return "outputs" in inspect.signature(task.run).parameters
    except (TypeError, ValueError):  # a callable without a signature (a builtin) takes no keyword
        return False


def run_tasks(
    table: pl.DataFrame, names: Sequence[str] | None = None, features: str = "video", seed: int = 0
) -> TaskResults:
    """Run the named tasks (all built-ins when None) on `table` with `features`; a task that cannot run is
    skipped. A name is a built-in, a `tkds.tasks` entry point or `module:Attr` (TASK_REGISTRY)."""
    names = list(TASKS) if names is None else list(names)
    tasks = {name: TASK_REGISTRY.resolve(name) for name in names}
    metrics_of, skipped, frames = {}, {}, []
    no_features = feature_skip_reason(table, features)
    for name, task in tasks.items():
        reason = no_features or task.skip_reason(table)
        outputs: list[pl.DataFrame] = []
        if reason is not None:
            metrics = {}
        elif _takes_outputs(task):
            metrics = task.run(table, features, seed, outputs=outputs)
        else:
            metrics = task.run(table, features, seed)
        if metrics:
            metrics_of[name] = metrics
            frames += [_checked(name, frame).with_columns(task=pl.lit(name)) for frame in outputs]
        else:
            skipped[name] = reason or "no metric could be computed on these rows"
    joined = pl.concat([frame.select(list(OUTPUT_COLUMNS)) for frame in frames]) if frames else None
    return TaskResults(metrics_of, skipped, joined)
