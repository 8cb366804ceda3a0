"""Retrieval: each labelled test video queries the labelled train gallery by cosine; relevant = same label.

R@k (k = 1, 5, 10, 20) is the fraction of queries with at least one relevant item in the top k, the
VCOP/IIC video-retrieval definition; mAP is the mean average precision over the full ranking. Queries
with no relevant gallery item are skipped.
The `_excl` variants remove from each query's ranking every gallery video that shares its sound
(music_id) or its author, so a match by reused sound or by creator cannot count; a query left with no
relevant item is skipped, as re-ID protocols do with "junk" matches. A null music_id or author_id
matches nothing. Ties in similarity go to the earlier gallery row.
Per-video outputs: each answerable query's AP and its R@k hit (0 or 1), per variant.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

from tkds.benchmarks.features import (
    codes,
    column,
    embedding,
    in_split,
    l2_normalise,
    missing_reason,
    row_block,
)
from tkds.benchmarks.metrics import ranked_hits
from tkds.benchmarks.tasks.per_video import Outputs, record
from tkds.errors import TkdsError

NAME = "retrieval"
NEEDS = ("label",)
KS = (1, 5, 10, 20)
# A sort key packs (similarity, gallery position, removed, relevant) into 64 bits: 32 + 26 + 1 + 1.
POSITION_BITS = 26


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


def ranking_keys(sim: np.ndarray, relevant: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """uint64 keys whose ascending order is each row's ranking: most similar first, ties to the earlier
    gallery row; the low bits carry `removed` (bit 1) and `relevant` (bit 0) along through the sort.

    Built in place: a block's keys cost 8 bytes an entry and their temporaries 8 more.
    """
    # float32 whatever the features' dtype (a float64 view would give two words an entry); + 0.0 turns
    # −0.0 into 0.0, which ranks the same.
    bits = (sim.astype(np.float32, copy=False) + np.float32(0.0)).view(np.uint32)
    # Float bits → unsigned integers in the same order (flip all bits of a negative, the sign of a
    # positive), then complemented so that high similarity sorts first.
    flip = bits >> np.uint32(31)
    flip *= np.uint32(0x7FFFFFFF)
    flip |= np.uint32(0x80000000)
    bits ^= flip
    del flip
    np.invert(bits, out=bits)
    keys = bits.astype(np.uint64)
    del bits
    keys <<= np.uint64(POSITION_BITS + 2)
    keys |= np.arange(sim.shape[1], dtype=np.uint64) << np.uint64(2)
    np.bitwise_or(keys, np.uint64(2), out=keys, where=removed)
    np.bitwise_or(keys, np.uint64(1), out=keys, where=relevant)
    return keys


def _sort_rows(keys: np.ndarray) -> None:
    """Sort each row of `keys` in place, rows split over the cores (numpy's sort releases the GIL)."""
    parts = np.array_split(np.arange(keys.shape[0]), min(os.cpu_count() or 1, keys.shape[0]))
    with ThreadPoolExecutor(len(parts)) as pool:
        list(pool.map(lambda rows: keys[rows[0] : rows[-1] + 1].sort(axis=1), parts))


def block_hits(sim: np.ndarray, relevant: np.ndarray, removed: np.ndarray) -> dict[str, tuple]:
    """Per variant ("" and "_excl"), each query's AP and first relevant rank from one sort of its row.

    The excluded ranking is the full one with the removed items taken out: a kept item's rank drops by
    the removed items above it, and a removed relevant item is no hit.
    """
    keys = ranking_keys(sim, relevant, removed)
    _sort_rows(keys)
    # The flags sit in each key's lowest byte: read through a view rather than a uint64 copy.
    lowest = keys.view(np.uint8)[:, (0 if sys.byteorder == "little" else 7) :: 8]
    hit = (lowest & 1).astype(bool)
    dropped = (lowest & 2).astype(bool)
    del keys, lowest
    rows, positions = np.nonzero(hit)
    variants = {"": ranked_hits(rows, positions + 1, sim.shape[0])}
    removed_above = np.cumsum(dropped, axis=1, dtype=np.int32)
    kept = ~dropped[rows, positions]
    rows, positions = rows[kept], positions[kept]
    variants["_excl"] = ranked_hits(rows, positions + 1 - removed_above[rows, positions], sim.shape[0])
    return variants


def run(table: pl.DataFrame, features: str, seed: int, outputs: Outputs = None) -> dict[str, float]:
    """R@k and mAP over all pairs, and with same-sound and same-author gallery items removed (`_excl`);
    each answerable query's values appended to `outputs` when given."""
    import torch  # the similarity product on every core

    if skip_reason(table) is not None:
        return {}
    x = l2_normalise(embedding(table, features))
    labelled = table["label"].is_not_null().to_numpy()
    queries = np.flatnonzero(labelled & in_split(table, "test"))
    gallery = np.flatnonzero(labelled & in_split(table, "train"))
    if len(gallery) >= 2**POSITION_BITS:
        raise TkdsError(f"retrieval ranks at most {2**POSITION_BITS:,} train videos; sample the table")
    label, sound, author = (codes(column(table, c)) for c in ("label", "music_id", "author_id"))
    x_gallery = torch.from_numpy(np.ascontiguousarray(x[gallery]))
    # Per variant: Σ over answerable queries of AP and of each R@k hit, and how many were answerable.
    totals = {suffix: dict.fromkeys([*(f"R@{k}" for k in KS), "mAP"], 0.0) for suffix in ("", "_excl")}
    answered = {"": 0, "_excl": 0}
    # Per variant, the answerable queries' rows, APs and first relevant ranks, block by block.
    per_query: dict[str, list[tuple[np.ndarray, ...]]] = {"": [], "_excl": []}
    for start in range(0, len(queries), row_block(len(gallery))):
        q = queries[start : start + row_block(len(gallery))]
        sim = (torch.from_numpy(x[q]) @ x_gallery.T).numpy()
        relevant = _same(label[q], label[gallery])
        shared = _same(sound[q], sound[gallery]) | _same(author[q], author[gallery])
        for suffix, (ap, first_rank) in block_hits(sim, relevant, shared).items():
            answerable = ~np.isnan(ap)
            answered[suffix] += int(answerable.sum())
            totals[suffix]["mAP"] += float(ap[answerable].sum())
            for k in KS:
                totals[suffix][f"R@{k}"] += int((first_rank[answerable] <= k).sum())
            if outputs is not None:
                per_query[suffix].append((q[answerable], ap[answerable], first_rank[answerable]))
    for suffix, blocks in per_query.items():
        if blocks and answered[suffix]:
            rows, ap, first_rank = (np.concatenate(parts) for parts in zip(*blocks, strict=True))
            record(outputs, table, rows, f"mAP{suffix}", None, ap)
            for k in KS:
                record(outputs, table, rows, f"R@{k}{suffix}", None, (first_rank <= k).astype(np.float64))
    return {
        f"{name}{suffix}": total / answered[suffix]
        for suffix, sums in totals.items()
        if answered[suffix]  # a variant no query can answer has no metrics
        for name, total in sums.items()
    }
