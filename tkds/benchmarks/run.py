"""`tkds bench`: for each method × seed, train (or reuse), embed every split, run the tasks, then rank.

A run folder holds run.json, METHOD/seedK/{cell.json, checkpoint.pt, train.jsonl, embeddings.parquet,
outputs/FEATURES.parquet (the tasks' per-video outputs, tkds.benchmarks.stats), metrics.json} and
`leaderboard.{json,md,html}`. Reuse is only of what is provably the same: run.json
records what the run's results depend on (the shards' identity from their dataset.json, the label
column, the tasks, the preset and the tkds version), and a re-run into the same folder with any of them
different is refused in one line. Each cell records the fingerprint of those settings with its method
and seed in cell.json; a cell is skipped on a re-run only when its metrics.json carries that fingerprint,
resumed (its checkpoint) only when its cell.json does, and otherwise cleared and computed afresh.
A failed cell writes error.json with its reason, the rest goes on, and the next run tries it again.
The whole run holds an exclusive lock on the folder: a second `tkds bench` into it is refused.
Reference rows need no training: `metadata-only` (author statistics), `sound-id` (one-hot of the
sound) and, when the shards come from SynthTok, the Bayes-optimal likes R² from its corpus card.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
import traceback
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

import tkds
from tkds.benchmarks.features import reference_table
from tkds.benchmarks.imported import ImportSpec, check_imports, read_embeddings
from tkds.benchmarks.leaderboard import write_leaderboard
from tkds.benchmarks.stats import OUTPUTS_DIR
from tkds.benchmarks.tasks import TASKS, TaskResults, run_tasks
from tkds.console import console
from tkds.dataset.split import SPLITS
from tkds.errors import TkdsError
from tkds.files import LOCK_NAME, atomic_path, exclusive_folder, file_sha256, write_json
from tkds.ids import preview

REFERENCE_METHODS = {"metadata-only": "metadata_only", "sound-id": "sound_onehot"}
DEFAULT_METHODS = ("random", "simclr", "av-simclr", "metadata-only", "sound-id")
RUN_RECORD = "run.json"
CELL_RECORD = "cell.json"
WARNINGS_LOG = "warnings.log"
MAX_SEEDS = 100
# A label column is a key of the samples' `labels`: a short plain name.
LABEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


@dataclass
class BenchSummary:
    done: list[str] = field(default_factory=list)  # "method/seedK"
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0
    stage_s: dict[str, float] = field(default_factory=dict)  # train, embed, tasks
    warnings: int = 0  # third-party warnings, kept in each cell's warnings.log instead of the terminal

    def add_time(self, stage: str, seconds: float) -> None:
        self.stage_s[stage] = self.stage_s.get(stage, 0.0) + seconds


def checked_manifest(shards: Path) -> dict:
    """The shards' dataset.json, refused in one line when it is missing or lists no shards."""
    try:
        manifest = json.loads((shards / "dataset.json").read_text())
    except (OSError, ValueError):
        raise TkdsError(f"{shards} holds no dataset.json; build shards with tkds shard first") from None
    if (
        not isinstance(manifest, dict)
        or not isinstance(manifest.get("shards"), dict)
        or not manifest["shards"]
    ):
        raise TkdsError(f"{shards / 'dataset.json'} lists no shards; rebuild them with tkds shard")
    return manifest


def _row(meta: dict, label_column: str) -> dict:
    stats, author = meta.get("stats") or {}, meta.get("author_stats") or {}
    labels = meta.get("labels") or {}
    label = labels.get(label_column)
    return {
        "key": meta["id"],
        "split": meta.get("split"),
        "label": None if label is None else str(label),
        "author_id": meta.get("author_id"),
        "music_id": meta.get("music_id"),
        "likes": stats.get("likes"),
        "followers": author.get("followers"),
        "author_hearts": author.get("hearts"),
        "author_videos": author.get("videos"),
        "create_time": meta.get("create_time"),
        "age_days": _age_days(meta.get("create_time"), stats.get("observed_at")),
        "hashtags": meta.get("hashtags") or [],
        "originality": labels.get("originality"),
        "is_outlier": labels.get("is_outlier"),
    }


def _age_days(created: int | None, observed: int | None) -> float | None:
    """How long the video had been up when its counts were observed."""
    return None if created is None or observed is None else max(observed - created, 0) / 86400


SCHEMA = {
    "key": pl.String, "split": pl.String, "label": pl.String, "author_id": pl.String, "music_id": pl.String,
    "likes": pl.Int64, "followers": pl.Int64, "author_hearts": pl.Int64, "author_videos": pl.Int64,
    "create_time": pl.Int64, "age_days": pl.Float64, "hashtags": pl.List(pl.String),
    "originality": pl.Float64, "is_outlier": pl.Boolean,
}  # fmt: skip


def metadata_table(shards: Path, label_column: str) -> pl.DataFrame:
    """Every sample's metadata, read from the json members alone (no decoding)."""
    from tkds.dataset.loader import read_metas

    rows = [_row(meta, label_column) for split in SPLITS for *_, meta in read_metas(shards, split)]
    return pl.DataFrame(rows, schema=SCHEMA)


def embeddings_table(parts: list, label_column: str) -> pl.DataFrame:
    """tkds.models.embed.Embeddings of each split → the table the tasks read."""
    frames = []
    for emb in parts:
        meta = pl.DataFrame([_row(m, label_column) for m in emb.meta], schema=SCHEMA)
        audio = [row.tolist() if has else None for row, has in zip(emb.audio, emb.has_audio, strict=True)]
        frames.append(
            meta.with_columns(
                pl.Series("video", emb.video.tolist(), dtype=pl.List(pl.Float32)),
                pl.Series("audio", audio, dtype=pl.List(pl.Float32)),
            )
        )
    return pl.concat(frames)


def _feature_sets(method: str) -> list[str]:
    """Every method is scored on its video embedding; audio-visual ones on audio alone and on both too."""
    from tkds.models.methods import method_class

    audio_visual = method_class(method).modality == "audio-visual"
    return ["video", "audio", "audio-visual"] if audio_visual else ["video"]


def _clean(metrics: dict) -> dict:
    """NaN (an undefined metric, e.g. a constant score) becomes null in JSON."""
    return {
        task: {
            name: (None if value is None or not np.isfinite(value) else float(value))
            for name, value in m.items()
        }
        for task, m in metrics.items()
    }


def dataset_identity(manifest: dict) -> str:
    """sha256 of the shards' names and contents as their dataset.json lists them (each tar's sha256, which
    `tkds shard --verify` checks): the bytes every cell reads, whatever the build's own bookkeeping."""
    shards = manifest["shards"]
    identity = {
        url: entry.get("sha256") if isinstance(entry, dict) else None for url, entry in shards.items()
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def check_options(methods: tuple[str, ...], seeds: object, tasks: tuple[str, ...] | None,
                  label: str | None, device: str | None) -> tuple[str, ...]:  # fmt: skip
    """Refuse bad bench options in one line each, before anything is read or written.

    Returns the methods, each once. Plug-in methods and tasks (tkds.plugins) are imported and checked here.
    """
    from tkds.benchmarks.tasks import TASK_REGISTRY
    from tkds.models.methods import METHOD_REGISTRY

    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise TkdsError(f"--seeds must be a whole number from 1 to {MAX_SEEDS}, not {_named(str(seeds))}")
    plug_in = "or a plug-in as package.module:Name (docs/plugins.md)"
    valid = ", ".join([*METHOD_REGISTRY.names(), *REFERENCE_METHODS, plug_in])
    if not methods:
        raise TkdsError(f"--methods names no method; choose from {valid}")
    learned = [m for m in methods if m not in REFERENCE_METHODS]
    known = METHOD_REGISTRY.names()
    unknown = [m for m in learned if not (isinstance(m, str) and ":" in m) and m not in known]
    if unknown:
        raise TkdsError(f"unknown method {', '.join(map(_named, unknown))}; choose from {valid}")
    for method in learned:
        METHOD_REGISTRY.resolve(method)  # a plug-in's spelling, import and class, each in one line
    known = TASK_REGISTRY.names()
    unknown = [t for t in tasks or () if not (isinstance(t, str) and ":" in t) and t not in known]
    if unknown or tasks == ():
        shown = ", ".join(map(_named, unknown)) or "(none)"
        raise TkdsError(f"unknown task {shown}; choose from {', '.join(known)}, {plug_in}")
    for task in tasks or ():
        TASK_REGISTRY.resolve(task)
    if label is not None and not (isinstance(label, str) and LABEL.fullmatch(label)):
        raise TkdsError(f"--label {_named(label)}: not a label column name (letters, digits, _ . -)")
    if device is not None:
        from tkds.models.train import check_device

        check_device(device)
    return tuple(dict.fromkeys(methods))


def _named(value: object) -> str:
    """A plain name as it is; anything else as a short quoted prefix."""
    return value if isinstance(value, str) and re.fullmatch(r"[\w.:-]{1,40}", value) else preview(value)


def _short(value: object) -> str:
    text = ",".join(value) if isinstance(value, list) else str(value)
    return preview(text[:12] if re.fullmatch(r"[0-9a-f]{64}", text) else text, 60)


def _claim_run(out: Path, shards: Path, settings: dict) -> None:
    """Refuse a folder that holds a run with other settings (or no run at all); record ours in run.json."""
    record = out / RUN_RECORD
    if record.exists():
        try:
            previous = json.loads(record.read_text())
        except (OSError, ValueError):
            previous = None
        if not isinstance(previous, dict):
            raise TkdsError(f"--out {out} has an unreadable {RUN_RECORD}; choose another --out")
        changed = [key for key in settings if previous.get(key) != settings[key]]
        if "dataset" in changed:
            raise TkdsError(
                f"--out {out} holds a run on other shards ({preview(previous.get('shards'), 80)}, dataset "
                f"{_short(previous.get('dataset'))}; --shards {shards} is {_short(settings['dataset'])}); "
                "use another --out, or those shards to add to that run"
            )
        if changed:
            differences = ", ".join(
                f"{key} {_short(previous.get(key))}, now {_short(settings[key])}" for key in changed
            )
            raise TkdsError(
                f"--out {out} holds a run with other settings ({differences}); "
                "use the same ones to add to it, or another --out"
            )
    elif any(path.name != LOCK_NAME for path in out.iterdir()):
        raise TkdsError(
            f"--out {out} is not empty and holds no tkds bench run (no {RUN_RECORD}: other files, or a run "
            "of an older tkds); choose an empty or new --out"
        )
    write_json(record, {"format": "tkds-bench-run", **settings, "shards": str(shards.resolve())}, indent=1)


def _recorded_fingerprint(path: Path) -> str | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record.get("fingerprint") if isinstance(record, dict) else None


def _open_cell(cell: Path, cell_fingerprint: str, inputs: dict) -> bool:
    """Whether `cell` is done with these inputs; a cell of other inputs (or of none recorded) is cleared,
    so that neither its metrics nor its checkpoint outlive them."""
    if _recorded_fingerprint(cell / CELL_RECORD) == cell_fingerprint:
        return _recorded_fingerprint(cell / "metrics.json") == cell_fingerprint
    if cell.exists():
        shutil.rmtree(cell)
    cell.mkdir(parents=True)
    write_json(cell / CELL_RECORD, {"fingerprint": cell_fingerprint, **inputs}, indent=1)
    return False


def bench(
    shards: str | Path,
    out: str | Path,
    methods: tuple[str, ...] = DEFAULT_METHODS,
    preset: str = "cpu-tiny",
    seeds: int = 3,
    tasks: tuple[str, ...] | None = None,
    label: str | None = None,
    device: str | None = None,
    progress: bool = True,
    embeddings: Mapping[str, str | Path] | Iterable[str | tuple[str, str | Path]] = (),
) -> BenchSummary:
    """Train, embed and score every method × seed on `shards`, then write the leaderboard into `out`.

    `embeddings` (NAME=PATH strings, (name, path) pairs or a mapping) are files of embeddings computed
    elsewhere (tkds.benchmarks.imported), each scored on every task × seed as out/NAME/seedK. They are
    read and checked before any method trains, and a bad one stops the run in one line.
    """
    from tkds.models.presets import get_preset

    started = time.perf_counter()
    shards, out = Path(shards), Path(out)
    methods = check_options(tuple(methods), seeds, None if tasks is None else tuple(tasks), label, device)
    imports = check_imports(embeddings, _method_names(methods))
    recipe = get_preset(preset)
    manifest = checked_manifest(shards)
    task_names = tuple(tasks or TASKS)
    label_column = label or manifest.get("label_column", "category")
    settings = {
        "dataset": dataset_identity(manifest),
        "label_column": label_column,
        "tasks": sorted(task_names),
        "preset": recipe.name,
        "preset_config_hash": recipe.config_hash(),
        "tkds_version": tkds.__version__,
    }
    summary = BenchSummary()
    with exclusive_folder(out, "--out"):
        _claim_run(out, shards, settings)
        metadata = metadata_table(shards, label_column)
        for spec in imports:
            _run_imported(out, spec, seeds, settings, task_names, label_column, metadata, summary)
        for method in methods:
            for seed in range(seeds):
                _run_cell(shards, out, method, seed, settings, recipe, task_names, label_column, metadata,
                          device, progress, summary)  # fmt: skip
        summary.wall_s = time.perf_counter() - started
        imported = tuple(spec.name for spec in imports)
        write_leaderboard(out, shards, manifest, (*methods, *imported), seeds, metadata)
    return summary


def _run_cell(shards: Path, out: Path, method: str, seed: int, settings: dict, recipe,
              task_names: tuple[str, ...], label_column: str, metadata: pl.DataFrame, device: str | None,
              progress: bool, summary: BenchSummary) -> None:  # fmt: skip
    cell = out / method / f"seed{seed}"
    name = f"{method}/seed{seed}"
    inputs = {**settings, "method": method, "seed": seed}
    cell_fingerprint = fingerprint(inputs)
    if _open_cell(cell, cell_fingerprint, inputs) and _has_readouts(cell, method):
        summary.reused.append(name)
        return
    console.print(f"[bold]{name}[/]")
    try:
        with _warnings_into(cell / WARNINGS_LOG, summary):
            if method in REFERENCE_METHODS:
                record = _reference_cell(metadata, cell, method, seed, task_names, summary)
            else:
                record = _learned_cell(shards, cell, method, recipe, seed, task_names, label_column,
                                       device, progress, summary)  # fmt: skip
    except (TkdsError, RuntimeError, ValueError) as error:
        _cell_failed(cell, name, error, summary)
        return
    _cell_done(cell, method, seed, record, label_column, cell_fingerprint, summary)


def _has_readouts(cell: Path, method: str) -> bool:
    """Whether a finished cell holds what tkds serve serves: a learned cell of an older tkds, scored before
    read-outs were saved, is scored again (its checkpoint is reused)."""
    from tkds.benchmarks.readouts import paths

    if method in REFERENCE_METHODS:
        return True
    return all(paths(cell, features)[1].is_file() for features in _feature_sets(method))


def _cell_failed(cell: Path, name: str, error: Exception, summary: BenchSummary) -> None:
    """Record a cell's failure in error.json and the summary; the run goes on."""
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    summary.failed[name] = reason
    write_json(cell / "error.json", {"error": reason, "traceback": traceback.format_exc()}, indent=1)
    console.print(f"[red]failed[/] {name}: {reason}")


def _cell_done(cell: Path, method: str, seed: int, record: dict, label_column: str, cell_fingerprint: str,
               summary: BenchSummary) -> None:  # fmt: skip
    """Write a computed cell's metrics.json, with the fingerprint that lets a re-run reuse it."""
    (cell / "error.json").unlink(missing_ok=True)
    record.update(method=method, seed=seed, tkds_version=tkds.__version__, label_column=label_column,
                  fingerprint=cell_fingerprint)  # fmt: skip
    write_json(cell / "metrics.json", record, indent=1)
    summary.done.append(f"{method}/seed{seed}")


def _method_names(methods: tuple[str, ...]) -> set[str]:
    """Names an imported file may not take: every built-in method's, this run's, and the leaderboard's own."""
    from tkds.models.methods import METHODS

    return {*METHODS, *REFERENCE_METHODS, *methods, "bayes-optimal"}


def _run_imported(out: Path, spec: ImportSpec, seeds: int, settings: dict, tasks: tuple[str, ...],
                  label_column: str, metadata: pl.DataFrame, summary: BenchSummary) -> None:  # fmt: skip
    """Score the embeddings file `spec` names, per seed, in out/NAME/seedK: cells like a method's, whose
    fingerprint holds the file's sha256, so a changed file is scored again and an unchanged one reused.

    The file is read (and checked) only when a cell is to be computed, and before any cell is cleared.
    """
    sha256 = file_sha256(spec.path)
    cells = []
    for seed in range(seeds):
        inputs = {**settings, "embeddings": spec.name, "sha256": sha256, "seed": seed}
        cell, cell_fingerprint = out / spec.name / f"seed{seed}", fingerprint(inputs)
        metrics = cell / "metrics.json"
        if _recorded_fingerprint(cell / CELL_RECORD) == cell_fingerprint == _recorded_fingerprint(metrics):
            summary.reused.append(f"{spec.name}/seed{seed}")
        else:
            cells.append((seed, cell, inputs, cell_fingerprint))
    if not cells:
        return
    started = time.perf_counter()
    imported = read_embeddings(spec, metadata)
    summary.add_time("read embeddings", time.perf_counter() - started)
    about = {"file": str(spec.path.resolve()), "sha256": sha256, "widths": imported.widths}
    for seed, cell, inputs, cell_fingerprint in cells:
        _open_cell(cell, cell_fingerprint, inputs)
        name = f"{spec.name}/seed{seed}"
        console.print(f"[bold]{name}[/] (imported embeddings, {imported.modality})")
        started = time.perf_counter()
        try:
            with _warnings_into(cell / WARNINGS_LOG, summary):
                rows = _score(cell, imported.table, imported.feature_sets, tasks, seed)
        except (TkdsError, RuntimeError, ValueError) as error:
            _cell_failed(cell, name, error, summary)
            continue
        wall_s = time.perf_counter() - started
        summary.add_time("tasks", wall_s)
        record = {"modality": imported.modality, "rows": rows, "imported": about, "device": "cpu",
                  "wall_s": wall_s}  # fmt: skip
        _cell_done(cell, spec.name, seed, record, label_column, cell_fingerprint, summary)


@contextmanager
def _warnings_into(log: Path, summary: BenchSummary) -> Iterator[None]:
    """Record the warnings libraries emit (scikit-learn's, torch's) into `log`, not onto the terminal."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            if caught:
                log.parent.mkdir(parents=True, exist_ok=True)
                lines = [f"{Path(w.filename).name}:{w.lineno}: {w.category.__name__}: {w.message}"
                         for w in caught]  # fmt: skip
                log.write_text("\n".join(lines) + "\n")
                summary.warnings += len(caught)


def _score(cell: Path, table: pl.DataFrame, feature_sets: Iterable[str], tasks: tuple[str, ...],
           seed: int) -> dict:  # fmt: skip
    """Run the tasks on each feature set of `table`, writing each one's per-video outputs into `cell`;
    returns metrics.json's rows: features → metrics and skipped tasks."""
    rows = {}
    for features in feature_sets:
        results = run_tasks(table, tasks, features, seed)
        rows[features] = {"metrics": _clean(results.metrics), "skipped": results.skipped}
        _write_outputs(cell, features, results)
    return rows


def _write_outputs(cell: Path, features: str, results: TaskResults) -> None:
    """The tasks' per-video outputs for `features` into cell/outputs/FEATURES.parquet (tkds.benchmarks.stats),
    before metrics.json marks the cell done; an older file goes when no task recorded any."""
    path = cell / OUTPUTS_DIR / f"{features}.parquet"
    if results.outputs is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as partial:
        results.outputs.write_parquet(partial)


def _reference_cell(metadata: pl.DataFrame, cell: Path, method: str, seed: int, tasks: tuple[str, ...],
                    summary: BenchSummary) -> dict:  # fmt: skip
    started = time.perf_counter()
    rows = _score(cell, reference_table(metadata, REFERENCE_METHODS[method]), ["video"], tasks, seed)
    summary.add_time("tasks", time.perf_counter() - started)
    return {
        "modality": "metadata",
        "rows": rows,
        "device": "cpu",
        "wall_s": time.perf_counter() - started,
    }


def _learned_cell(shards: Path, cell: Path, method: str, recipe, seed: int, tasks: tuple[str, ...],
                  label_column: str, device: str | None, progress: bool,
                  summary: BenchSummary) -> dict:  # fmt: skip
    from tkds.benchmarks.readouts import save_readouts
    from tkds.models.embed import embed
    from tkds.models.train import train

    started = time.perf_counter()
    trained = train(shards, cell, method, recipe, seed=seed, device=device, progress=progress)
    summary.add_time("train", time.perf_counter() - started)
    mark = time.perf_counter()
    parts = [embed(trained.checkpoint, shards, split, device=device, progress=progress) for split in SPLITS]
    table = embeddings_table([p for p in parts if p.keys], label_column)
    table.write_parquet(cell / "embeddings.parquet")
    summary.add_time("embed", time.perf_counter() - mark)
    mark = time.perf_counter()
    rows = _score(cell, table, _feature_sets(method), tasks, seed)
    for features in rows:
        save_readouts(cell, table, features, seed, tasks)  # what tkds serve serves, before metrics.json
    summary.add_time("tasks", time.perf_counter() - mark)
    return {
        "modality": parts[0].modality,
        "rows": rows,
        "preset": recipe.to_dict(),
        "config_hash": trained.config_hash,
        "device": trained.device,
        "train_s": trained.train_seconds,
        "wall_s": time.perf_counter() - started,
    }
