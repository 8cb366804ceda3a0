"""The leaderboard: every method × features row with each metric as mean ± std over seeds, in JSON,
Markdown and a self-contained HTML page with figures (bars with error bars, an embedding map coloured by
label, and originality against likes)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import polars as pl

import tkds
from tkds.benchmarks.features import embedding, in_split
from tkds.benchmarks.metrics import demean_within, r2
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


def _cell(value: dict | None) -> str:
    if not value or value.get("mean") is None:
        return "–"
    return f"{value['mean']:.3f} ± {value['std']:.3f}" if value["n"] > 1 else f"{value['mean']:.3f}"


def _task_tables(rows: list[dict]) -> list[tuple[str, list[str], list[list[str]]]]:
    tables = []
    for task in TASKS:
        names: list[str] = []
        for row in rows:
            names += [n for n in row["metrics"].get(task, {}) if n not in names]
        body = []
        for row in rows:
            label = f"{row['method']} ({row['features']})"
            if task in row.get("skipped", {}):
                body.append([label, f"skipped: {row['skipped'][task]}", *[""] * (len(names) - 1)])
            elif row["metrics"].get(task) or not row.get("failed"):
                body.append([label, *[_cell(row["metrics"].get(task, {}).get(n)) for n in names]])
            else:
                body.append(
                    [label, "failed: " + "; ".join(f"seed {s}: {r}" for s, r in row["failed"].items())]
                )
        tables.append((task, names, body))
    return tables


def _summary_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["method", "features", "backbone", "frames×size", "audio s", "batch", "epochs", "seeds",
              "device", "wall s", *[f"{t}: {m}" for t, m in HEADLINE.items()], "config", "tkds"]  # fmt: skip
    body = []
    for row in rows:
        text = [row.get(key) for key in ("backbone", "frames_size", "audio_seconds", "batch", "epochs")]
        body.append([
            row["method"], row["features"], *["-" if v is None else str(v) for v in text],
            str(row["seeds"]), str(row.get("device") or "-"), f"{row.get('wall_s', 0):.0f}",
            *[_cell(row["metrics"].get(t, {}).get(m)) for t, m in HEADLINE.items()],
            str(row.get("config_hash") or "-"), str(row.get("tkds_version") or "-"),
        ])  # fmt: skip
    return header, body


def _markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells + [""] * (len(header) - len(cells))) + " |" for cells in body]
    return "\n".join(lines)


def _html_table(header: list[str], body: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _png(figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _bars(rows: list[dict]) -> str:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(HEADLINE), figsize=(4 * len(HEADLINE), 3.6))
    for axis, (task, metric) in zip(axes, HEADLINE.items(), strict=True):
        shown = [(f"{r['method']}\n{r['features']}", r["metrics"].get(task, {}).get(metric)) for r in rows]
        shown = [(label, v) for label, v in shown if v and v.get("mean") is not None]
        axis.bar(range(len(shown)), [v["mean"] for _, v in shown], yerr=[v["std"] for _, v in shown],
                 capsize=3, color="#4c72b0")  # fmt: skip
        axis.set_xticks(range(len(shown)), [label for label, _ in shown], rotation=60, fontsize=7, ha="right")
        axis.set_title(f"{task}: {metric}", fontsize=9)
    figure.tight_layout()
    return _png(figure)


def best_learned(rows: list[dict]) -> dict | None:
    """The learned row (method × features) with the best classification linear top-1, or None."""
    learned = [
        r for r in rows if r.get("config_hash") not in (None, "-") and r["metrics"].get("classification")
    ]
    key = HEADLINE["classification"]
    return max(learned, key=lambda r: r["metrics"]["classification"][key]["mean"] or 0, default=None)


def _embedding_figures(out: Path, best: dict) -> tuple[str, str]:
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    from tkds.benchmarks.tasks.originality import detector_scores

    table = pl.read_parquet(out / best["method"] / "seed0" / "embeddings.parquet")
    x = embedding(table, best["features"])
    points = PCA(n_components=2, random_state=0).fit_transform(x)
    labels = table["label"].fill_null("unlabelled").to_numpy()
    figure, axis = plt.subplots(figsize=(5.5, 4.5))
    for value in sorted(set(labels)):
        chosen = labels == value
        axis.scatter(points[chosen, 0], points[chosen, 1], s=9, label=value)
    axis.legend(fontsize=7, markerscale=1.5, loc="best")
    axis.set_title(f"{best['method']} ({best['features']}): PCA of the embeddings, by label", fontsize=9)
    embedding_map = _png(figure)

    score = detector_scores(x, seed=0)["iforest"]
    likes = table["likes"].to_numpy().astype(float)
    authors = table["author_id"].fill_null("").to_numpy()
    known = np.isfinite(likes)
    figure, axis = plt.subplots(figsize=(5.5, 4.5))
    residual = demean_within(np.log1p(likes[known]), authors[known])
    axis.scatter(score[known], residual, s=8, alpha=0.6)
    order = np.argsort(score[known])
    bins = np.array_split(order, 10)
    axis.plot([score[known][b].mean() for b in bins], [residual[b].mean() for b in bins], color="#c44e52",
              marker="o", label="decile means")  # fmt: skip
    axis.set_xlabel("originality (IsolationForest score)")
    axis.set_ylabel("log(1+likes), demeaned within author")
    axis.legend(fontsize=8)
    axis.set_title("Originality against likes", fontsize=9)
    return embedding_map, _png(figure)


def write_leaderboard(out: Path, shards: Path, manifest: dict, methods: tuple[str, ...], seeds: int,
                      metadata: pl.DataFrame) -> list[dict]:  # fmt: skip
    """Write leaderboard.json, .md and .html into `out`; returns the rows."""
    rows = aggregate_rows(out, methods, seeds)
    ceiling = bayes_row(manifest, metadata)
    if ceiling:
        rows.append(ceiling)
    dataset = {"shards": str(shards.resolve()), "counts": manifest.get("counts"),
               "split": manifest.get("split"), "label_column": manifest.get("label_column"),
               "videos": metadata.height}  # fmt: skip
    (out / "leaderboard.json").write_text(json.dumps({"dataset": dataset, "rows": rows}, indent=1))
    header, body = _summary_table(rows)
    tables = _task_tables(rows)
    markdown = [f"# Leaderboard\n\nShards: `{dataset['shards']}` ({metadata.height} videos, label column "
                f"`{dataset['label_column']}`, split by {(dataset['split'] or {}).get('method')}). "
                "Metrics are mean ± std over seeds.\n", _markdown(header, body)]  # fmt: skip
    for task, names, task_body in tables:
        markdown += [f"\n## {task}\n", _markdown(["row", *names], task_body)]
    (out / "leaderboard.md").write_text("\n".join(markdown) + "\n")

    figures = [("Headline metric per task (mean ± std over seeds)", _bars(rows))]
    best = best_learned(rows)
    if best and (out / best["method"] / "seed0" / "embeddings.parquet").exists():
        embedding_map, originality = _embedding_figures(out, best)
        figures += [("Embedding map", embedding_map), ("Originality against likes", originality)]
    parts = [
        f"<h2>{html.escape(title)}</h2><img src='{src}' alt='{html.escape(title)}'>" for title, src in figures
    ]
    parts.append("<h2>Summary</h2>" + _html_table(header, body))
    for task, names, task_body in tables:
        parts.append(f"<h2>{task}</h2>" + _html_table(["row", *names], task_body))
    style = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
             "table{border-collapse:collapse;font-size:12px;margin-bottom:1.5em}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
             "td:first-child{text-align:left}img{max-width:100%}")  # fmt: skip
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>tkds leaderboard</title>"
            f"<style>{style}</style></head><body><h1>tkds leaderboard</h1>"
            f"<p>{html.escape(dataset['shards'])}: {metadata.height} videos.</p>"
            f"{''.join(parts)}</body></html>")  # fmt: skip
    (out / "leaderboard.html").write_text(page)
    return rows
