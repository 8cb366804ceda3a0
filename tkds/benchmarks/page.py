"""The leaderboard's HTML page: a Jinja2 template (autoescaped) over the rows, with figures inlined as PNG.

It reads in a minute on a laptop: a headline table (one metric per task, the best value of each column
marked, values at or below chance flagged, rows ranked by their normalised score, chance, majority, floor
and ceiling rows beside them), each task's floor and ceiling, figures titled
with the method, split and seeds they show, one table per task in a box that scrolls on its own, the
recipes, the paired differences of rows with per-video outputs, and a glossary of every metric with its
direction and levels. No machine path appears on it.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import jinja2
import numpy as np
import polars as pl

import tkds
from tkds.benchmarks.features import embedding, l2_normalise
from tkds.benchmarks.glossary import HIGHER, baselines, describe
from tkds.benchmarks.leaderboard import (
    HEADLINE,
    REFERENCE_INPUTS,
    best_learned,
    cell_text,
    differences_table,
    levels_table,
    normalised_text,
    ranked,
    recipe_table,
    row_label,
    task_metric_names,
    task_note,
)
from tkds.benchmarks.metrics import demean_within
from tkds.benchmarks.tasks import TASKS

SPLITS = ("train", "val", "test")

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("tkds.benchmarks", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
TASK_ABOUT = {
    "classification": "A linear probe and a 20-NN vote on the label column, train → test.",
    "retrieval": "Test videos query the train gallery by cosine; a video of the same label is relevant.",
    "originality": "Anomaly scores of every video against the whole corpus, read against likes and the "
    "planted outliers, globally and within sound or hashtag cohorts.",
    "likes": "Ridge regression of log(1 + likes) from author counts, the embedding, and both.",
    "hashtags": "Each test video's tags ranked from its embedding alone, by a kNN vote and by linear heads.",
}


def _is_level(row: dict) -> bool:
    return row.get("modality") == "ceiling"


def _table(rows: list[dict], columns: list[tuple[str, str]], levels: dict, *, named: bool = False,
           found: dict | None = None) -> dict:  # fmt: skip
    """Header and rows for the template: each value with its best/below-chance mark, level rows last.

    With `found` (the tasks' floors and ceilings), the headline: a normalised-score column and the floor
    and ceiling rows."""
    best: dict[tuple[str, str], float] = {}
    for task, metric in columns:
        if describe(task, metric).direction == HIGHER:
            means = [_mean(row, task, metric) for row in rows if not _is_level(row)]
            known = [m for m in means if m is not None]
            if len(set(known)) > 1:  # a column where every row ties has no best
                best[(task, metric)] = max(known)
    header = [{"text": "row", "title": None, "sub": None}] + [
        {"text": task if named else metric, "sub": metric if named else None,
         "title": describe(task, metric).text}
        for task, metric in columns
    ]  # fmt: skip
    scored = [r["normalised_mean"] for r in rows if not _is_level(r) and r.get("normalised_mean") is not None]
    top = max(scored) if found is not None and len(set(scored)) > 1 else None
    if found is not None:
        header.append({"text": "normalised", "sub": "mean (tasks)",
                       "title": "(score − floor) / (ceiling − floor), averaged over the tasks where it "
                       "is defined; 0 is the floor, 1 the ceiling"})  # fmt: skip
    body = []
    for row in rows:
        cells = [{"text": row_label(row), "kind": None}]
        tasks = {task for task, _ in columns}
        notes = {task: task_note(row, task) for task in tasks}
        if len(tasks) == 1 and (note := notes[columns[0][0]]):
            cells.append({"text": note, "kind": None})
        else:
            for task, metric in columns:
                mean = _mean(row, task, metric)
                kind = None
                if mean is not None and best.get((task, metric)) == mean:
                    kind = "best"
                elif mean is not None and mean <= levels["chance"].get(task, {}).get(metric, -np.inf):
                    kind = "below"
                cells.append({"text": cell_text(row["metrics"].get(task, {}).get(metric)), "kind": kind})
        if found is not None:
            mean = row.get("normalised_mean")
            kind = None
            if mean is not None and mean == top:
                kind = "best"
            elif mean is not None and mean <= 0:  # at or below the floor
                kind = "below"
            cells.append({"text": normalised_text(row), "kind": kind})
        body.append({"cells": cells, "kind": "level" if _is_level(row) else None})
    for level in ("chance", "majority", *(("floor", "ceiling") if found is not None else ())):
        if level in ("floor", "ceiling"):
            values = [(found[task][level] or {}).get("value") for task, _ in columns] + [None]
        else:
            values = [levels[level].get(task, {}).get(metric) for task, metric in columns]
        if any(v is not None for v in values):
            texts = ["–" if v is None else f"{v:.3f}" for v in values]
            cells = [{"text": text, "kind": None} for text in [level, *texts]]
            body.append({"cells": cells, "kind": "level"})
    return {"header": header, "rows": body}


def _plain(header: list[str], body: list[list[str]]) -> dict:
    """A table of texts alone (no marks) for the template."""
    return {
        "header": [{"text": name, "title": None, "sub": None} for name in header],
        "rows": [{"cells": [{"text": text, "kind": None} for text in cells], "kind": None} for cells in body],
    }


def _mean(row: dict, task: str, metric: str) -> float | None:
    return (row["metrics"].get(task, {}).get(metric) or {}).get("mean")


def _glossary(rows: list[dict], levels: dict) -> dict[str, list[dict]]:
    entries = {}
    for task in TASKS:
        entries[task] = [
            {"name": metric, **describe(task, metric)._asdict(),
             "chance": levels["chance"].get(task, {}).get(metric),
             "majority": levels["majority"].get(task, {}).get(metric)}
            for metric in task_metric_names(rows, task)
        ]  # fmt: skip
    return {task: found for task, found in entries.items() if found}


def _png(figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _short_label(row: dict) -> str:
    return row["method"] if row["method"] in REFERENCE_INPUTS else f"{row['method']} ({row['features']})"


def _bars(rows: list[dict], levels: dict) -> str:
    """The headline metric of every task side by side, one row of bars per leaderboard row, with the
    chance, majority and ceiling lines."""
    import matplotlib.pyplot as plt

    shown = [row for row in rows if not _is_level(row)]
    figure, axes = plt.subplots(
        1, len(HEADLINE), figsize=(13, 1.2 + 0.32 * len(shown)), sharey=True, squeeze=False
    )
    for axis, (task, metric) in zip(axes[0], HEADLINE.items(), strict=True):
        means = [_mean(row, task, metric) for row in shown]
        axis.barh(range(len(shown)), [np.nan if m is None else m for m in means],
                  xerr=_error_bars(shown, task, metric), capsize=2, color="#4c72b0")  # fmt: skip
        lines = [("chance", levels["chance"], "--", "#777"), ("majority", levels["majority"], ":", "#333")]
        for name, values, style, colour in lines:
            if (value := values.get(task, {}).get(metric)) is not None:
                axis.axvline(value, linestyle=style, color=colour, label=name)
        for row in rows:
            if _is_level(row) and (value := _mean(row, task, metric)) is not None:
                axis.axvline(value, linestyle="-.", color="#c44e52", label=row["method"])
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
        axis.set_title(f"{task}\n{metric}", fontsize=9)
        axis.tick_params(axis="x", labelsize=7)
    axes[0][0].set_yticks(range(len(shown)), [_short_label(row) for row in shown], fontsize=8)
    axes[0][0].invert_yaxis()
    figure.tight_layout()
    return _png(figure)


def _error_bars(rows: list[dict], task: str, metric: str) -> np.ndarray:
    """Below and above each bar (2 × rows): to its 95 % interval's ends where it has one, else ± std."""
    bars = np.zeros((2, len(rows)))
    for index, row in enumerate(rows):
        value = row["metrics"].get(task, {}).get(metric) or {}
        if value.get("mean") is None:
            continue
        if value.get("ci"):
            bars[:, index] = value["mean"] - value["ci"][0], value["ci"][1] - value["mean"]
        else:
            bars[:, index] = value.get("std") or 0.0
    return np.clip(bars, 0, None)


def _embedding_figures(out: Path, best: dict) -> tuple[str, str]:
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    from tkds.benchmarks.tasks.originality import Forest

    table = pl.read_parquet(out / best["method"] / "seed0" / "embeddings.parquet")
    x = embedding(table, best["features"])
    points = PCA(n_components=2, random_state=0).fit_transform(x)
    labels = table["label"].fill_null("unlabelled").to_numpy()
    figure, axis = plt.subplots(figsize=(6, 4.8))
    for value in sorted(set(labels)):
        chosen = labels == value
        axis.scatter(points[chosen, 0], points[chosen, 1], s=9, label=value)
    axis.legend(fontsize=7, markerscale=1.5, loc="best")
    axis.set_xlabel("first principal component", fontsize=8)
    axis.set_ylabel("second principal component", fontsize=8)
    embedding_map = _png(figure)

    unit = l2_normalise(x)  # as the originality task scores it
    score = Forest.fit(unit, seed=0).score(unit)
    likes = table["likes"].to_numpy().astype(float)
    authors = table["author_id"].fill_null("").to_numpy()
    known = np.isfinite(likes)
    figure, axis = plt.subplots(figsize=(6, 4.8))
    residual = demean_within(np.log1p(likes[known]), authors[known])
    axis.scatter(score[known], residual, s=8, alpha=0.6)
    bins = np.array_split(np.argsort(score[known]), 10)
    axis.plot([score[known][b].mean() for b in bins], [residual[b].mean() for b in bins], color="#c44e52",
              marker="o", label="decile means")  # fmt: skip
    axis.set_xlabel("originality (IsolationForest score)", fontsize=8)
    axis.set_ylabel("log(1+likes), demeaned within author", fontsize=8)
    axis.legend(fontsize=8)
    return embedding_map, _png(figure)


def write_page(out: Path, name: str, dataset: dict, rows: list[dict], seeds: int, metadata: pl.DataFrame,
               found: dict, differences: dict[str, list[dict]]) -> None:  # fmt: skip
    """Render leaderboard.html into `out`: `found` is the tasks' floors and ceilings (leaderboard.levels),
    `differences` the paired differences per task (leaderboard.add_intervals)."""
    levels = baselines(metadata)
    figures = [{
        "title": "Headline metric per task", "half": False,
        "src": _bars(rows, levels),
        "caption": f"Test split, mean over {seeds} seed{'s' if seeds != 1 else ''} with its 95 % interval "
        "where the cells saved per-video outputs, else ± std; the dashed lines "
        "are the levels that need no model (chance, majority) and the SynthTok ceiling where it is known.",
    }]  # fmt: skip
    best = best_learned(rows)
    if best and (out / best["method"] / "seed0" / "embeddings.parquet").exists():
        embedding_map, originality = _embedding_figures(out, best)
        shown = f"{row_label(best)}, seed 0, all {metadata.height} videos (every split)"
        figures += [
            {"title": "Embedding map", "src": embedding_map, "half": True,
             "caption": f"{shown}: the two first principal components, coloured by label."},
            {"title": "Originality against likes", "src": originality, "half": True,
             "caption": f"{shown}: IsolationForest score of each video against its log likes, both within "
             "its author, with the means of each score decile."},
        ]  # fmt: skip
    counts = {split: n for split, n in (dataset.get("counts") or {}).items() if split in SPLITS}
    page = TEMPLATES.get_template("leaderboard.html.j2").render(
        dataset={"name": name, "videos": metadata.height, "counts": counts,
                 "label_column": dataset.get("label_column"),
                 "split_method": (dataset.get("split") or {}).get("method")},
        seeds=seeds,
        version=tkds.__version__,
        headline=_table(ranked(rows), list(HEADLINE.items()), levels, named=True, found=found),
        floors=_plain(*levels_table(found)),
        figures=figures,
        tasks=[{"name": task, "about": TASK_ABOUT[task],
                "table": _table(rows, [(task, m) for m in task_metric_names(rows, task)], levels),
                "metric": HEADLINE.get(task),
                "differences": _plain(*differences_table(differences[task])) if task in differences else None}
               for task in TASKS],
        recipes=_plain(*recipe_table(rows)),
        glossary=_glossary(rows, levels),
    )  # fmt: skip
    (out / "leaderboard.html").write_text(page)
