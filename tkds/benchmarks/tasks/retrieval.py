"""Retrieval: each labelled test video queries the labelled train gallery by cosine; relevant = same label.

R@k (k = 1, 5, 10, 20) is the fraction of queries with at least one relevant item in the top k, the
VCOP/IIC video-retrieval definition; mAP is the mean average precision over the full ranking. Queries
with no relevant gallery item are skipped.
The `_excl` variants remove from each query's ranking every gallery video that shares its sound
(music_id) or its author, so a match by reused sound or by creator cannot count; a query left with no
relevant item is skipped, as re-ID protocols do with "junk" matches. A null music_id or author_id
matches nothing. Ties in similarity go to the earlier gallery row.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import polars as pl

from tkds.benchmarks.features import CHUNK, codes, column, embedding, in_split, l2_normalise, missing_reason
from tkds.benchmarks.metrics import mean_average_precision, recall_at_k

NAME = "retrieval"
NEEDS = ("label",)
KS = (1, 5, 10, 20)


def skip_reason(table: pl.DataFrame) -> str | None:
    """Why the task cannot run on `table`, or None."""
    reason = missing_reason(table, NEEDS)
    if reason is not None:
        return reason
    train_labels = set(table["label"].filter(in_split(table, "train")).drop_nulls())
    if not train_labels & set(table["label"].filter(in_split(table, "test")).drop_nulls()):
        return "no test label occurs among the train labels"
    return None


def _same(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """(queries, gallery) mask of equal, known codes."""
    return (query[:, None] == gallery[None, :]) & (query[:, None] >= 0)


def run(table: pl.DataFrame, features: str, seed: int) -> dict[str, float]:
    """R@k and mAP over all pairs, and with same-sound and same-author gallery items removed (`_excl`)."""
    if skip_reason(table) is not None:
        return {}
    x = l2_normalise(embedding(table, features))
    labelled = table["label"].is_not_null().to_numpy()
    queries = np.flatnonzero(labelled & in_split(table, "test"))
    gallery = np.flatnonzero(labelled & in_split(table, "train"))
    label, sound, author = (codes(column(table, c)) for c in ("label", "music_id", "author_id"))
    x_gallery = x[gallery]
    # Per variant: Σ over query blocks of (block mean × answerable queries), and the answerable queries.
    totals: dict[str, dict[str, float]] = {"": defaultdict(float), "_excl": defaultdict(float)}
    answered = {"": 0, "_excl": 0}
    for start in range(0, len(queries), CHUNK):
        q = queries[start : start + CHUNK]
        sim = x[q] @ x_gallery.T
        relevant = _same(label[q], label[gallery])
        shared = _same(sound[q], sound[gallery]) | _same(author[q], author[gallery])
        for suffix, removed in (("", np.zeros_like(shared)), ("_excl", shared)):
            # A removed item goes last and counts as not relevant: the same as dropping it from the ranking.
            order = np.argsort(np.where(removed, np.inf, -sim), axis=1, kind="stable")
            ranked = np.take_along_axis(relevant & ~removed, order, axis=1)
            answerable = int(ranked.any(axis=1).sum())
            if answerable:
                answered[suffix] += answerable
                block = {
                    **{f"R@{k}": recall_at_k(ranked, k) for k in KS},
                    "mAP": mean_average_precision(ranked),
                }
                for name, value in block.items():
                    totals[suffix][name] += value * answerable
    return {
        f"{name}{suffix}": total / answered[suffix]
        for suffix, sums in totals.items()
        for name, total in sums.items()
    }
