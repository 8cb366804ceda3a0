"""The leaderboard: every method × features row with each metric as mean ± std over seeds, in JSON and
Markdown; the HTML page with figures and a glossary is page.py's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

import tkds
from tkds.benchmarks.features import in_split
from tkds.benchmarks.metrics import r2
from tkds.benchmarks.tasks import TASKS
from tkds.benchmarks.tasks.likes import time_forward_split

# The number each task is ranked by in the figures and the summary table.
HEADLINE = {
    "classification": "linear_top1",
    "retrieval": "mAP",
    "originality": "auroc_iforest",
    "likes": "r2_combined",
    "hashtags": "NDCG@5_knn",
}


def _cells(out: Path, method: str, seeds: int) -> tuple[list[dict], dict[int, str]]:
    records, failed = [], {}
    for seed in range(seeds):
        cell = out / method / f"seed{seed}"
        if (cell / "metrics.json").exists():
            records.append(json.loads((cell / "metrics.json").read_text()))
        elif (cell / "error.json").exists():
            failed[seed] = json.loads((cell / "error.json").read_text())["error"]
        else:
            failed[seed] = "not run"
    return records, failed


def _aggregate(values: list[float | None]) -> dict:
    known = np.array([v for v in values if v is not None], dtype=float)
    if not known.size:
        return {"mean": None, "std": None, "n": 0}
    std = float(known.std(ddof=1)) if known.size > 1 else 0.0
    return {"mean": float(known.mean()), "std": std, "n": int(known.size)}


def aggregate_rows(out: Path, methods: tuple[str, ...], seeds: int) -> list[dict]:
    """One row per (method, features): metadata of the recipe and each metric's mean ± std over seeds."""
    rows = []
    for method in methods:
        records, failed = _cells(out, method, seeds)
        if not records:
            rows.append({"method": method, "features": "-", "seeds": 0, "failed": failed, "metrics": {}})
            continue
        for features in records[0]["rows"]:
            per_task: dict[str, dict[str, list]] = {}
            skipped: dict[str, str] = {}
            for record in records:
                row = record["rows"].get(features, {})
                skipped.update(row.get("skipped", {}))
                for task, metrics in row.get("metrics", {}).items():
                    for name, value in metrics.items():
                        per_task.setdefault(task, {}).setdefault(name, []).append(value)
            preset = records[0].get("preset") or {}
            backbones = (preset.get("video_backbone"), preset.get("audio_backbone"))
            rows.append({
                "method": method,
                "features": features,
                "modality": records[0].get("modality"),
                "backbone": "+".join(filter(None, backbones)) or "-",
                "frames_size": f"{preset['frames']}×{preset['size']}²" if preset else "-",
                "audio_seconds": preset.get("audio_seconds"),
                "batch": preset.get("batch_size"),
                "epochs": preset.get("epochs"),
                "preset": preset.get("name", "-"),
                "seeds": len(records),
                "device": records[0].get("device"),
                "wall_s": float(np.mean([r.get("wall_s", 0.0) for r in records])),
                "config_hash": records[0].get("config_hash", "-"),
                "tkds_version": records[0].get("tkds_version", tkds.__version__),
                "metrics": {t: {n: _aggregate(v) for n, v in m.items()} for t, m in per_task.items()},
                "skipped": skipped,
                "failed": failed,
            })  # fmt: skip
    return rows


def bayes_row(manifest: dict, metadata: pl.DataFrame) -> dict | None:
    """The likes ceiling on the very same test rows, when the shards were labelled from a SynthTok card.

    The Bayes-optimal prediction of log(1 + likes) is the card's likes model without its noise term; its
    R² on the test rows (author-disjoint, and time-forward) is what no model of these rows can beat.
    """
    card_path = (manifest.get("params") or {}).get("labels")
    if not card_path or not card_path.endswith(".json") or not Path(card_path).is_file():
        return None
    videos = {v["id"]: v for v in json.loads(Path(card_path).read_text()).get("videos", [])}
    known = np.array(
        [key in videos and videos[key].get("likes_terms") for key in metadata["key"]], dtype=bool
    )
    if not known.any():
        return None
    truth = np.log1p(metadata["likes"].fill_null(0).to_numpy().astype(float))
    best = np.array([
        videos[k]["log1p_likes"] - videos[k]["likes_terms"]["noise"] if ok else np.nan
        for k, ok in zip(metadata["key"], known, strict=True)
    ])  # fmt: skip
    splits = {"": (in_split(metadata, "test") & known)}
    if metadata["create_time"].null_count() == 0:
        splits["_time"] = time_forward_split(metadata, known)[1]
    likes = {
        f"r2_combined{suffix}": {"mean": r2(truth[test], best[test]), "std": 0.0, "n": 1}
        for suffix, test in splits.items()
        if test.sum() >= 2
    }
    return {"method": "bayes-optimal", "features": "true factors", "modality": "ceiling", "seeds": 1,
            "metrics": {"likes": likes}, "skipped": {}, "failed": {}}  # fmt: skip


REFERENCE_INPUTS = {
    "metadata-only": "author counts and video age",
    "sound-id": "one-hot of the sound id",
    "bayes-optimal": "true factors",
}


def row_label(row: dict) -> str:
    """A row's name for people: reference rows say what they read, not the embedding they stand in for."""
    inputs = REFERENCE_INPUTS.get(row["method"])
    return f"{row['method']} (reference: {inputs})" if inputs else f"{row['method']} ({row['features']})"


def cell_text(value: dict | None) -> str:
    if not value or value.get("mean") is None:
        return "–"
    return f"{value['mean']:.3f} ± {value['std']:.3f}" if value["n"] > 1 else f"{value['mean']:.3f}"


def task_metric_names(rows: list[dict], task: str) -> list[str]:
    names: list[str] = []
    for row in rows:
        names += [n for n in row["metrics"].get(task, {}) if n not in names]
    return names


def task_note(row: dict, task: str) -> str | None:
    """Why a row has no numbers for `task` (skipped or failed), or None when it has them."""
    if task in row.get("skipped", {}):
        return f"skipped: {row['skipped'][task]}"
    if not row["metrics"].get(task) and row.get("failed"):
        return "failed: " + "; ".join(f"seed {s}: {r}" for s, r in row["failed"].items())
    return None


def _task_tables(rows: list[dict]) -> list[tuple[str, list[str], list[list[str]]]]:
    tables = []
    for task in TASKS:
        names = task_metric_names(rows, task)
        body = []
        for row in rows:
            note = task_note(row, task)
            cells = [note] if note else [cell_text(row["metrics"].get(task, {}).get(n)) for n in names]
            body.append([row_label(row), *cells])
        tables.append((task, names, body))
    return tables


def summary_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["row", *[f"{t}: {m}" for t, m in HEADLINE.items()]]
    body = [
        [row_label(row), *[cell_text(row["metrics"].get(t, {}).get(m)) for t, m in HEADLINE.items()]]
        for row in rows
    ]
    return header, body


RECIPE = (("backbone", "backbone"), ("frames×size", "frames_size"), ("audio s", "audio_seconds"),
          ("batch", "batch"), ("epochs", "epochs"), ("preset", "preset"), ("seeds", "seeds"),
          ("device", "device"), ("wall s", "wall_s"), ("config", "config_hash"),
          ("tkds", "tkds_version"))  # fmt: skip


def recipe_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The recipe of every learned row: backbone, input, batch, epochs, preset, seeds, device, time."""
    learned = [row for row in rows if row.get("config_hash") not in (None, "-")]

    def shown(row: dict, key: str) -> str:
        value = row.get(key)
        return "-" if value is None else f"{value:.0f}" if key == "wall_s" else str(value)

    return ["row", *(name for name, _ in RECIPE)], [
        [row_label(row), *(shown(row, key) for _, key in RECIPE)] for row in learned
    ]


def _markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells + [""] * (len(header) - len(cells))) + " |" for cells in body]
    return "\n".join(lines)


def best_learned(rows: list[dict]) -> dict | None:
    """The learned row (method × features) with the best classification linear top-1, or None."""
    learned = [
        r for r in rows if r.get("config_hash") not in (None, "-") and r["metrics"].get("classification")
    ]
    key = HEADLINE["classification"]
    return max(learned, key=lambda r: r["metrics"]["classification"][key]["mean"] or 0, default=None)


def write_leaderboard(out: Path, shards: Path, manifest: dict, methods: tuple[str, ...], seeds: int,
                      metadata: pl.DataFrame) -> list[dict]:  # fmt: skip
    """Write leaderboard.json, .md and .html into `out`; returns the rows."""
    from tkds.benchmarks.page import write_page

    rows = aggregate_rows(out, methods, seeds)
    ceiling = bayes_row(manifest, metadata)
    if ceiling:
        rows.append(ceiling)
    dataset = {"shards": str(shards.resolve()), "counts": manifest.get("counts"),
               "split": manifest.get("split"), "label_column": manifest.get("label_column"),
               "videos": metadata.height}  # fmt: skip
    (out / "leaderboard.json").write_text(json.dumps({"dataset": dataset, "rows": rows}, indent=1))
    split_method = (dataset["split"] or {}).get("method")
    markdown = [f"# Leaderboard\n\nShards `{shards.name}` ({metadata.height} videos, label column "
                f"`{dataset['label_column']}`, split by {split_method}). Metrics are mean ± std over "
                f"{seeds} seeds; the glossary, chance levels and figures are in leaderboard.html.\n",
                _markdown(*summary_table(rows))]  # fmt: skip
    for task, names, task_body in _task_tables(rows):
        markdown += [f"\n## {task}\n", _markdown(["row", *names], task_body)]
    markdown += ["\n## recipes\n", _markdown(*recipe_table(rows))]
    (out / "leaderboard.md").write_text("\n".join(markdown) + "\n")
    write_page(out, shards.name, dataset, rows, seeds, metadata)
    return rows
