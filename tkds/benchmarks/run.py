"""`tkds bench`: for each method × seed, train (or reuse), embed every split, run the tasks, then rank.

A run folder holds METHOD/seedK/{checkpoint.pt, train.jsonl, embeddings.parquet, metrics.json} and
`leaderboard.{json,md,html}`. A cell with metrics.json is done and skipped on a re-run; a failed cell
writes error.json with its reason, the rest goes on, and the next run tries it again.
Reference rows need no training: `metadata-only` (author statistics), `sound-id` (one-hot of the
sound) and, when the shards come from SynthTok, the Bayes-optimal likes R² from its corpus card.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

import tkds
from tkds.benchmarks.features import reference_table
from tkds.benchmarks.leaderboard import write_leaderboard
from tkds.benchmarks.tasks import TASKS, run_tasks
from tkds.console import console
from tkds.dataset.split import SPLITS
from tkds.errors import TkdsError
from tkds.files import write_json

REFERENCE_METHODS = {"metadata-only": "metadata_only", "sound-id": "sound_onehot"}
DEFAULT_METHODS = ("random", "simclr", "av-simclr", "metadata-only", "sound-id")


@dataclass
class BenchSummary:
    done: list[str] = field(default_factory=list)  # "method/seedK"
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0
    stage_s: dict[str, float] = field(default_factory=dict)  # train, embed, tasks

    def add_time(self, stage: str, seconds: float) -> None:
        self.stage_s[stage] = self.stage_s.get(stage, 0.0) + seconds


def _manifest(shards: Path) -> dict:
    try:
        return json.loads((shards / "dataset.json").read_text())
    except (OSError, ValueError):
        raise TkdsError(f"{shards} holds no dataset.json; build shards with tkds shard first") from None


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


def bench(
    shards: str | Path,
    out: str | Path,
    methods: tuple[str, ...] = DEFAULT_METHODS,
    preset: str = "cpu-tiny",
    seeds: int = 2,
    tasks: tuple[str, ...] | None = None,
    label: str | None = None,
    device: str | None = None,
    progress: bool = True,
) -> BenchSummary:
    """Train, embed and score every method × seed on `shards`, then write the leaderboard into `out`."""
    from tkds.models.methods import METHODS
    from tkds.models.presets import get_preset

    started = time.perf_counter()
    shards, out = Path(shards), Path(out)
    manifest = _manifest(shards)
    recipe = get_preset(preset)
    unknown = [m for m in methods if m not in METHODS and m not in REFERENCE_METHODS]
    if unknown:
        valid = ", ".join([*METHODS, *REFERENCE_METHODS])
        raise TkdsError(f"unknown method {', '.join(unknown)}; choose from {valid}")
    task_names = tuple(tasks or TASKS)
    label_column = label or manifest.get("label_column", "category")
    out.mkdir(parents=True, exist_ok=True)
    summary = BenchSummary()
    metadata = metadata_table(shards, label_column)
    for method in methods:
        for seed in range(seeds):
            cell = out / method / f"seed{seed}"
            name = f"{method}/seed{seed}"
            if (cell / "metrics.json").exists():
                summary.reused.append(name)
                continue
            cell.mkdir(parents=True, exist_ok=True)
            console.print(f"[bold]{name}[/]")
            try:
                if method in REFERENCE_METHODS:
                    record = _reference_cell(metadata, method, seed, task_names, summary)
                else:
                    record = _learned_cell(shards, cell, method, recipe, seed, task_names, label_column,
                                           device, progress, summary)  # fmt: skip
            except (TkdsError, RuntimeError, ValueError) as error:
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                summary.failed[name] = reason
                write_json(
                    cell / "error.json", {"error": reason, "traceback": traceback.format_exc()}, indent=1
                )
                console.print(f"[red]failed[/] {name}: {reason}")
                continue
            (cell / "error.json").unlink(missing_ok=True)
            record.update(method=method, seed=seed, tkds_version=tkds.__version__, label_column=label_column)
            write_json(cell / "metrics.json", record, indent=1)
            summary.done.append(name)
    summary.wall_s = time.perf_counter() - started
    write_leaderboard(out, shards, manifest, methods, seeds, metadata)
    return summary


def _reference_cell(metadata: pl.DataFrame, method: str, seed: int, tasks: tuple[str, ...],
                    summary: BenchSummary) -> dict:  # fmt: skip
    started = time.perf_counter()
    table = reference_table(metadata, REFERENCE_METHODS[method])
    results = run_tasks(table, tasks, "video", seed)
    summary.add_time("tasks", time.perf_counter() - started)
    return {
        "modality": "metadata",
        "rows": {"video": {"metrics": _clean(results.metrics), "skipped": results.skipped}},
        "device": "cpu",
        "wall_s": time.perf_counter() - started,
    }


def _learned_cell(shards: Path, cell: Path, method: str, recipe, seed: int, tasks: tuple[str, ...],
                  label_column: str, device: str | None, progress: bool,
                  summary: BenchSummary) -> dict:  # fmt: skip
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
    rows = {}
    for features in _feature_sets(method):
        results = run_tasks(table, tasks, features, seed)
        rows[features] = {"metrics": _clean(results.metrics), "skipped": results.skipped}
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
