"""The leaderboard: every method × features row with each metric as mean ± std over seeds, in JSON and
Markdown; the HTML page with figures and a glossary is page.py's.

Each task's headline metric has a floor (the best random-encoder row; on likes, metadata-only too) and a
ceiling (SynthTok's Bayes-optimal value where it is known, else the best supervised row), and each row its
normalised score there, (score − floor) / (ceiling − floor); the headline table ranks rows by its mean over
the tasks where it is defined. Where the cells saved per-video outputs (tkds.benchmarks.stats), every
headline number gets a 95 % paired-bootstrap interval and each pair of rows a significance mark.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import polars as pl

import tkds
from tkds.benchmarks import stats
from tkds.benchmarks.features import in_split
from tkds.benchmarks.metrics import r2
from tkds.benchmarks.tasks import TASKS
from tkds.benchmarks.tasks.likes import time_forward_split
from tkds.errors import TkdsError
from tkds.synth.factors import AUTHOR_TERMS, CONTENT_TERMS

# The number each task is ranked by in the figures and the summary table.
HEADLINE = {
    "classification": "linear_top1",
    "retrieval": "mAP",
    "originality": "auroc_iforest",
    "likes": "r2_combined",
    "hashtags": "NDCG@5_knn",
}
# The rows that set each task's floor (the best of them) and ceiling (the first that has a value).
FLOOR_METHODS = {task: ("random", "metadata-only") if task == "likes" else ("random",) for task in HEADLINE}
CEILING_METHODS = ("bayes-optimal", "supervised")
NON_CONTENT_TERMS = (*AUTHOR_TERMS, "age")  # the card's likes terms an embedding cannot see


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
                "imported": records[0].get("imported"),  # an --embeddings file: its path, sha256, widths
                "tkds_version": records[0].get("tkds_version", tkds.__version__),
                "metrics": {t: {n: _aggregate(v) for n, v in m.items()} for t, m in per_task.items()},
                "skipped": skipped,
                "failed": failed,
            })  # fmt: skip
    return rows


def bayes_row(manifest: dict, metadata: pl.DataFrame) -> dict | None:
    """The likes ceilings on the very same test rows, when the shards were labelled from a SynthTok card.

    The Bayes-optimal prediction of log(1 + likes) is the card's likes model without its noise term; its
    R² on the test rows (author-disjoint, and time-forward) is what no model of these rows can beat
    (`r2_combined`). The content-only ceiling (`r2_content`) sees the content terms (category, sound,
    originality) and the mean of the rest (author, age) among the card's videos of the same category:
    what an embedding alone could reach.
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
    predictions = {"combined": np.full(len(known), np.nan), "content": np.full(len(known), np.nan)}
    rest_by_category = _non_content_means(videos.values())
    for row, key in enumerate(metadata["key"]):
        if known[row]:
            video = videos[key]
            terms = video["likes_terms"]
            predictions["combined"][row] = video["log1p_likes"] - terms["noise"]
            content = terms["intercept"] + sum(terms[term] for term in CONTENT_TERMS)
            predictions["content"][row] = content + rest_by_category.get(video.get("category"), np.nan)
    splits = {"": (in_split(metadata, "test") & known)}
    if metadata["create_time"].null_count() == 0:
        splits["_time"] = time_forward_split(metadata, known)[1]
    likes = {
        f"r2_{inputs}{suffix}": {"mean": r2(truth[test], best[test]), "std": 0.0, "n": 1}
        for inputs, best in predictions.items()
        for suffix, test in splits.items()
        if test.sum() >= 2 and np.isfinite(best[test]).all()
    }
    return {"method": "bayes-optimal", "features": "true factors", "modality": "ceiling", "seeds": 1,
            "metrics": {"likes": likes}, "skipped": {}, "failed": {}}  # fmt: skip


def _non_content_means(videos: Iterable[dict]) -> dict[int, float]:
    """Per category, the mean of the likes terms an embedding cannot see (author, age) over the card."""
    sums: dict[int, list[float]] = {}
    for video in videos:
        terms = video.get("likes_terms")
        if terms and video.get("category") is not None:
            rest = sum(terms[t] for t in NON_CONTENT_TERMS)
            total = sums.setdefault(video["category"], [0.0, 0])
            total[0], total[1] = total[0] + rest, total[1] + 1
    return {category: total / count for category, (total, count) in sums.items()}


REFERENCE_INPUTS = {
    "metadata-only": "author counts and video age",
    "sound-id": "one-hot of the sound id",
    "bayes-optimal": "true factors",
}


def row_label(row: dict) -> str:
    """A row's name for people: reference rows say what they read, not the embedding they stand in for;
    imported ones that their embeddings come from a file (--embeddings)."""
    if row.get("imported"):
        return f"{row['method']} (imported embeddings, {row['features']})"
    inputs = REFERENCE_INPUTS.get(row["method"])
    return f"{row['method']} (reference: {inputs})" if inputs else f"{row['method']} ({row['features']})"


def cell_text(value: dict | None) -> str:
    """mean [95 % interval] where per-video outputs gave one, else mean ± std over seeds."""
    if not value or value.get("mean") is None:
        return "–"
    if value.get("ci"):
        return f"{value['mean']:.3f} [{value['ci'][0]:.3f}, {value['ci'][1]:.3f}]"
    return f"{value['mean']:.3f} ± {value['std']:.3f}" if value["n"] > 1 else f"{value['mean']:.3f}"


def headline_mean(row: dict, task: str) -> float | None:
    return (row["metrics"].get(task, {}).get(HEADLINE[task]) or {}).get("mean")


def levels(rows: list[dict]) -> dict[str, dict]:
    """Per task: its headline metric's floor and ceiling ({"row", "value"} or None), the Bayes-optimal and
    best supervised values behind the ceiling, and `note`, why no row has a normalised score, or ""."""

    def best(task: str, methods: tuple[str, ...]) -> dict | None:
        scored = [(headline_mean(r, task), r) for r in rows if r["method"] in methods]
        value, row = max(((v, r) for v, r in scored if v is not None), key=lambda p: p[0], default=(0, None))
        return None if row is None else {"row": row_label(row), "value": value}

    found = {}
    for task, metric in HEADLINE.items():
        floor = best(task, FLOOR_METHODS[task])
        ceilings = {method: best(task, (method,)) for method in CEILING_METHODS}
        ceiling = next((c for c in ceilings.values() if c), None)
        _, note = stats.normalised(0.0, floor and floor["value"], ceiling and ceiling["value"])
        found[task] = {"metric": metric, "floor": floor, "ceiling": ceiling, **ceilings, "note": note}
    return found


def add_normalised(rows: list[dict], found: dict[str, dict]) -> None:
    """Each row's normalised score per task (`normalised`, None where undefined, with `normalised_notes`),
    and `normalised_mean`, their mean over the tasks where it is defined (`normalised_tasks` of them)."""
    for row in rows:
        row["normalised"], row["normalised_notes"] = {}, {}
        for task, level in found.items():
            floor, ceiling = level["floor"], level["ceiling"]
            value, note = stats.normalised(
                headline_mean(row, task), floor and floor["value"], ceiling and ceiling["value"]
            )
            row["normalised"][task] = value
            if note:
                row["normalised_notes"][task] = note
        defined = [v for v in row["normalised"].values() if v is not None]
        row["normalised_mean"] = float(np.mean(defined)) if defined else None
        row["normalised_tasks"] = len(defined)


def ranked(rows: list[dict]) -> list[dict]:
    """Rows by mean normalised score, highest first; rows without one next, level rows (the Bayes-optimal
    ceiling) last, each group in its original order."""

    def key(row: dict) -> tuple[int, float]:
        if row.get("modality") == "ceiling":
            return 2, 0.0
        mean = row.get("normalised_mean")
        return (1, 0.0) if mean is None else (0, -mean)

    return sorted(rows, key=key)


def normalised_text(row: dict) -> str:
    mean = row.get("normalised_mean")
    return "–" if mean is None else f"{mean:.3f} ({row['normalised_tasks']}/{len(HEADLINE)})"


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
    plug_ins = [t for row in rows for t in [*row["metrics"], *row.get("skipped", {})] if t not in TASKS]
    for task in [*TASKS, *dict.fromkeys(plug_ins)]:  # the built-ins, then plug-in tasks (tkds.plugins)
        names = task_metric_names(rows, task)
        body = []
        for row in rows:
            note = task_note(row, task)
            cells = [note] if note else [cell_text(row["metrics"].get(task, {}).get(n)) for n in names]
            body.append([row_label(row), *cells])
        tables.append((task, names, body))
    return tables


def summary_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The headline metric of every task per row, ranked by the normalised score (its mean over the tasks
    where it is defined, and how many), then each task's floor and ceiling."""
    found = levels(rows)
    add_normalised(rows, found)
    header = ["row", *[f"{t}: {m}" for t, m in HEADLINE.items()], "normalised (tasks)"]
    body = [
        [row_label(row), *[cell_text(row["metrics"].get(t, {}).get(m)) for t, m in HEADLINE.items()],
         normalised_text(row)]
        for row in ranked(rows)
    ]  # fmt: skip
    for level in ("floor", "ceiling"):
        values = [found[task][level] for task in HEADLINE]
        body.append([level, *("–" if v is None else f"{v['value']:.3f}" for v in values), ""])
    return header, body


def levels_table(found: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    """Each task's floor and ceiling and the rows they come from, and why there is no normalised score."""

    def shown(level: dict | None) -> str:
        return "–" if level is None else f"{level['value']:.3f}: {level['row']}"

    header = ["task", "metric", "floor", "ceiling", "bayes-optimal", "supervised", "normalised score"]
    return header, [
        [task, level["metric"], shown(level["floor"]), shown(level["ceiling"]),
         shown(level["bayes-optimal"]), shown(level["supervised"]), level["note"] or "defined"]
        for task, level in found.items()
    ]  # fmt: skip


def add_intervals(out: Path, rows: list[dict], seeds: int) -> dict[str, list[dict]]:
    """Bootstrap intervals of every headline number whose cells saved per-video outputs (`ci` beside its
    mean, with the videos and seeds it rests on), and per task the paired difference of every two such
    rows. A row whose outputs cannot be read keeps mean ± std and says why in `interval_notes`."""
    differences: dict[str, list[dict]] = {}
    for task, metric in HEADLINE.items():
        kind = stats.metric_kind(metric)
        found: dict[int, stats.Outputs] = {}
        for index, row in enumerate(rows):
            value = row["metrics"].get(task, {}).get(metric)
            if not value or value.get("mean") is None or row["features"] == "-":
                continue
            paths = [out / row["method"] / f"seed{s}" / stats.OUTPUTS_DIR / f"{row['features']}.parquet"
                     for s in range(seeds)]  # fmt: skip
            try:
                outputs = stats.read_outputs([p for p in paths if p.is_file()], task, metric)
            except TkdsError as error:
                row.setdefault("interval_notes", {})[task] = str(error)
                continue
            if outputs is None:
                continue
            bounds = stats.interval(_replicates(outputs, kind, outputs.keys))
            value.update(ci=list(bounds) if bounds else None, ci_videos=int(outputs.keys.size),
                         ci_seeds=len(outputs.y_score))  # fmt: skip
            found[index] = outputs
        pairs = [
            pair
            for i, a in found.items()
            for j, b in found.items()
            if j > i and (pair := _pair(rows[i], rows[j], a, b, task, kind))
        ]
        if pairs:
            differences[task] = pairs
    return differences


def _pair(row_a: dict, row_b: dict, a: stats.Outputs, b: stats.Outputs, task: str,
          kind: str) -> dict | None:  # fmt: skip
    """Row a minus row b on the videos both scored, resampled together; None when they share none."""
    common = np.intersect1d(a.keys, b.keys)
    if not common.size:
        return None
    diff = headline_mean(row_a, task) - headline_mean(row_b, task)
    found = stats.difference(_replicates(a, kind, common), _replicates(b, kind, common), diff)
    if found is None:
        return None
    return {"a": row_label(row_a), "b": row_label(row_b), "diff": diff, "low": found.low,
            "high": found.high, "significant": found.significant}  # fmt: skip


def _replicates(outputs: stats.Outputs, kind: str, keys: np.ndarray) -> np.ndarray:
    """A row's bootstrap distribution on `keys`; rows on the same videos share the draws, so pair."""
    subset = outputs if np.array_equal(keys, outputs.keys) else outputs.on(keys)
    return stats.replicates(subset, kind, stats.draws(keys.size))


def differences_table(pairs: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["row a", "row b", "a − b", "95 % interval", "significant"]
    return header, [
        [p["a"], p["b"], f"{p['diff']:+.3f}", f"[{p['low']:+.3f}, {p['high']:+.3f}]",
         "yes" if p["significant"] else "no"]
        for p in pairs
    ]  # fmt: skip


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
    """The learned row (method × features) with the best classification linear top-1, or None; never an
    imported row (the web app needs the checkpoint that tkds trained)."""
    learned = [
        r
        for r in rows
        if r.get("config_hash") not in (None, "-")
        and not r.get("imported")
        and r["metrics"].get("classification")
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
    found = levels(rows)
    add_normalised(rows, found)
    differences = add_intervals(out, rows, seeds)
    dataset = {"shards": str(shards.resolve()), "counts": manifest.get("counts"),
               "split": manifest.get("split"), "label_column": manifest.get("label_column"),
               "videos": metadata.height}  # fmt: skip
    board = {"dataset": dataset, "levels": found, "differences": differences, "rows": rows}
    (out / "leaderboard.json").write_text(json.dumps(board, indent=1))
    split_method = (dataset["split"] or {}).get("method")
    markdown = [f"# Leaderboard\n\nShards `{shards.name}` ({metadata.height} videos, label column "
                f"`{dataset['label_column']}`, split by {split_method}). Metrics are mean ± std over "
                f"{seeds} seeds, or mean [95 % interval] (paired bootstrap over test videos and seeds) "
                "where the cells saved per-video outputs; rows are ranked by their normalised score, "
                "(score − floor) / (ceiling − floor), averaged over the tasks where it is defined. The "
                "glossary, chance levels and figures are in leaderboard.html.\n",
                _markdown(*summary_table(rows)), "\n## floors and ceilings\n",
                _markdown(*levels_table(found))]  # fmt: skip
    for task, names, task_body in _task_tables(rows):
        markdown += [f"\n## {task}\n", _markdown(["row", *names], task_body)]
        if task in differences:
            markdown += [f"\nPaired differences of {HEADLINE[task]} (95 % bootstrap interval):\n",
                         _markdown(*differences_table(differences[task]))]  # fmt: skip
    markdown += ["\n## recipes\n", _markdown(*recipe_table(rows))]
    (out / "leaderboard.md").write_text("\n".join(markdown) + "\n")
    write_page(out, shards.name, dataset, rows, seeds, metadata, found, differences)
    return rows
