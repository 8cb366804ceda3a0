"""A plug-in task in one module: does each test video's nearest train video (by cosine) share its label?

    PYTHONPATH=examples tkds bench --shards SHARDS --out RUN --tasks classification,my_task:NearestLabel

A task is any module or object with NAME, NEEDS, skip_reason(table) and run(table, features, seed)
(docs/plugins.md); its rows in the leaderboard are keyed by the name it was run as.
"""

from __future__ import annotations

from types import SimpleNamespace

import polars as pl

from tkds.benchmarks.features import cosine_neighbours, embedding, in_split, missing_reason

NAME = "nearest-label"
NEEDS = ("label",)


def skip_reason(table: pl.DataFrame) -> str | None:
    """Why the task cannot run on `table`, or None."""
    reason = missing_reason(table, NEEDS)
    if reason is not None:
        return reason
    labelled = table["label"].is_not_null().to_numpy()
    missing = [split for split in ("train", "test") if not (labelled & in_split(table, split)).any()]
    return f"no labelled {missing[0]} rows" if missing else None


def run(table: pl.DataFrame, features: str, seed: int) -> dict[str, float]:
    """1-NN label accuracy, test → train; deterministic, so `seed` is unused."""
    if skip_reason(table) is not None:
        return {}
    x, labels = embedding(table, features), table["label"].to_numpy()
    labelled = table["label"].is_not_null().to_numpy()
    train, test = labelled & in_split(table, "train"), labelled & in_split(table, "test")
    nearest, _ = cosine_neighbours(x[test], x[train], 1)
    return {"nn_top1": float((labels[train][nearest[:, 0]] == labels[test]).mean())}


# This module is a task (a tkds.tasks entry point can name it); the same task as an object, for the
# package.module:Attr spelling:
NearestLabel = SimpleNamespace(NAME=NAME, NEEDS=NEEDS, skip_reason=skip_reason, run=run)
