"""The fitted read-outs of one cell × features, saved with the cell: exactly what `tkds serve` serves.

A read-out is the task's own fitted object (`likes.LikesReadout`, `hashtags.HashtagsReadout`,
`originality.OriginalityReadout`), the one its metrics score. `save_readouts` writes them into
CELL/readouts/FEATURES.npz (every array; numpy's format, read back with allow_pickle=False, so loading
runs no code) and FEATURES.json (every other field, the tasks skipped and why, and the npz's sha256),
the json last. `load_readouts` checks the sha256, the fields and the arrays' shapes, and refuses anything
else in one line.
"""

from __future__ import annotations

import json
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path

import numpy as np
import polars as pl

from tkds.benchmarks.features import FEATURES, feature_skip_reason
from tkds.benchmarks.tasks import hashtags, likes, originality
from tkds.errors import TkdsError
from tkds.files import atomic_path, file_sha256, write_json

FORMAT = "tkds-readouts-1"
FOLDER = "readouts"
# The tasks with a served read-out, and its class.
READOUTS = {
    "likes": likes.LikesReadout,
    "hashtags": hashtags.HashtagsReadout,
    "originality": originality.OriginalityReadout,
}
TASK_MODULES = {"likes": likes, "hashtags": hashtags, "originality": originality}
SCALARS = (str, int, float)


def paths(cell: Path, features: str) -> tuple[Path, Path]:
    """(npz, json) of `features`' read-outs in `cell`."""
    if features not in FEATURES:
        raise TkdsError(f"unknown features '{features}'; choose one of {', '.join(FEATURES)}")
    folder = cell / FOLDER
    return folder / f"{features}.npz", folder / f"{features}.json"


def fit_readouts(table: pl.DataFrame, features: str, seed: int, tasks: tuple[str, ...]) -> dict:
    """Each of `tasks` that has a read-out → its fitted read-out, or the reason (str) it has none."""
    no_features = feature_skip_reason(table, features)
    fitted = {}
    for name in (task for task in READOUTS if task in tasks):
        module = TASK_MODULES[name]
        readout = None if no_features else module.fit_readout(table, features, seed)
        fitted[name] = readout if readout is not None else no_features or module.skip_reason(table)
    return fitted


def save_readouts(cell: Path, table: pl.DataFrame, features: str, seed: int, tasks: tuple[str, ...]) -> Path:
    """Fit and write the read-outs of `tasks` on `table` with `features`; returns the json's path."""
    npz, record = paths(cell, features)
    npz.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    params: dict[str, object] = {}
    skipped: dict[str, str] = {}
    for name, readout in fit_readouts(table, features, seed, tasks).items():
        if isinstance(readout, str):
            skipped[name] = readout
        else:
            _flatten(readout, f"{name}.", arrays, params)
    with atomic_path(npz) as partial, open(partial, "wb") as file:
        np.savez(file, **arrays)
    write_json(
        record,
        {"format": FORMAT, "features": features, "seed": seed, "tasks": sorted(set(READOUTS) & set(tasks)),
         "skipped": skipped, "params": params, "npz_sha256": file_sha256(npz)},
        indent=1,
    )  # fmt: skip
    return record


def load_readouts(cell: Path, features: str) -> dict:
    """Task name → its read-out, as `save_readouts` wrote them (skipped tasks → the reason, a str)."""
    npz, record_path = paths(cell, features)
    missing = [str(p) for p in (record_path, npz) if not p.is_file()]
    if missing:
        raise TkdsError(
            f"{cell} has no saved read-outs for {features} ({', '.join(missing)} missing): delete {cell} "
            "and re-run tkds bench to save read-outs"
        )
    bad = f"{record_path} is not a read-out this tkds can load ({{}}); delete {cell} and re-run tkds bench"
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        raise TkdsError(bad.format("unreadable json")) from None
    if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("features") != features:
        raise TkdsError(bad.format(f"not {FORMAT} of {features}"))
    if file_sha256(npz) != record.get("npz_sha256"):
        raise TkdsError(bad.format(f"{npz.name} does not match its recorded sha256"))
    try:
        with np.load(npz, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except (OSError, ValueError) as error:
        raise TkdsError(bad.format(f"{npz.name}: {str(error)[:80]}")) from None
    params, skipped = record.get("params"), record.get("skipped")
    tasks = record.get("tasks")
    if not (isinstance(params, dict) and isinstance(skipped, dict) and isinstance(tasks, list)):
        raise TkdsError(bad.format("no params, tasks or skipped"))
    loaded: dict = {}
    for name in tasks:
        if name not in READOUTS:
            raise TkdsError(bad.format(f"unknown task {str(name)[:40]}"))
        if name in skipped:
            loaded[name] = str(skipped[name])
            continue
        try:
            readout = _unflatten(READOUTS[name], f"{name}.", arrays, params)
        except (TypeError, ValueError) as error:
            raise TkdsError(bad.format(str(error)[:80])) from None
        problem = CHECKS[name](readout)
        if problem or readout.features != features:
            raise TkdsError(bad.format(f"{name}: {problem or 'other features'}"))
        loaded[name] = readout
    return loaded


def _flatten(readout: object, prefix: str, arrays: dict, params: dict) -> None:
    """A read-out's fields by dotted name: arrays into `arrays`, scalars into `params`, nested read-outs
    (a ridge, a forest) field by field."""
    for field in fields(readout):
        value, key = getattr(readout, field.name), prefix + field.name
        if is_dataclass(value):
            _flatten(value, key + ".", arrays, params)
        elif isinstance(value, np.ndarray):
            arrays[key] = value
        else:
            params[key] = value.item() if isinstance(value, np.generic) else value


def _unflatten(cls: type, prefix: str, arrays: dict, params: dict) -> object:
    """`_flatten`'s inverse: each field read by its declared type (an array, a scalar or a dataclass)."""
    values = {}
    for name, kind in typing.get_type_hints(cls).items():
        key = prefix + name
        if is_dataclass(kind):
            values[name] = _unflatten(kind, key + ".", arrays, params)
        elif key not in (arrays if kind is np.ndarray else params):
            raise ValueError(f"no {key}")
        elif kind is np.ndarray:
            values[name] = arrays[key]
        else:
            value = params[key]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if kind not in SCALARS or type(value) is not kind:
                raise TypeError(f"{key} is not a {getattr(kind, '__name__', kind)}")
            values[name] = value
    return cls(**values)


def _shaped(array: np.ndarray, kind: str, ndim: int) -> bool:
    return array.dtype.kind in kind and array.ndim == ndim


def _likes_problem(readout: likes.LikesReadout) -> str | None:
    ridge, scaler = readout.ridge, readout.ridge.standardiser
    width = int(scaler.kept.sum()) if _shaped(scaler.kept, "b", 1) else -1
    vectors = (scaler.fill, scaler.mean, scaler.scale, ridge.coefficients)
    if readout.inputs not in ("author", "content", "combined") or width < 0:
        return "bad inputs or kept columns"
    if not all(_shaped(v, "f", 1) and len(v) == width for v in vectors):
        return "the standardiser and coefficients disagree in width"
    if not (_shaped(readout.residuals, "f", 1) and len(readout.residuals) == len(likes.PERCENTILES)):
        return "bad residual percentiles"
    if not np.isfinite(ridge.coefficients).all() or not (scaler.scale > 0).all():
        return "non-finite coefficients or scales"
    return None


def _hashtags_problem(readout: hashtags.HashtagsReadout) -> str | None:
    if not (_shaped(readout.vocabulary, "U", 1) and _shaped(readout.train_x, "f", 2)):
        return "bad vocabulary or train embeddings"
    rows, columns = readout.tag_rows, readout.tag_columns
    if not (_shaped(rows, "i", 1) and _shaped(columns, "i", 1) and len(rows) == len(readout.train_x) + 1):
        return "bad tag offsets"
    ordered = rows[0] == 0 and rows[-1] == len(columns) and (np.diff(rows) >= 0).all()
    if not (ordered and ((columns >= 0) & (columns < len(readout.vocabulary))).all()):
        return "the tags do not match the vocabulary and train videos"
    return None if readout.k >= 1 and len(readout.train_x) else "no train videos or k < 1"


def _originality_problem(readout: originality.OriginalityReadout) -> str | None:
    forest = readout.forest
    nodes = forest.feature
    arrays = (forest.threshold, forest.left, forest.right, forest.depth)
    if not (_shaped(nodes, "i", 1) and all(a.ndim == 1 and len(a) == len(nodes) for a in arrays)):
        return "the forest's node arrays disagree"
    if not (_shaped(forest.roots, "i", 1) and forest.left.dtype.kind == forest.right.dtype.kind == "i"):
        return "bad tree roots or children"
    index = np.arange(len(nodes))
    inner = forest.left >= 0
    # Children come after their node and inside the arrays, so every walk ends at a leaf.
    children_ok = ((forest.left > index) & (forest.right > index) & (forest.right < len(nodes)))[inner].all()
    roots_ok = ((forest.roots >= 0) & (forest.roots < len(nodes))).all()
    features_ok = ((nodes >= 0) & (nodes < forest.width)).all()
    if not (children_ok and roots_ok and features_ok and (forest.right[~inner] == -1).all()):
        return "the forest's trees do not hold together"
    if not (_shaped(readout.keys, "U", 1) and _shaped(readout.corpus_scores, "f", 1)):
        return "bad keys or corpus scores"
    return None if len(readout.keys) == len(readout.corpus_scores) else "keys and corpus scores disagree"


CHECKS = {"likes": _likes_problem, "hashtags": _hashtags_problem, "originality": _originality_problem}
