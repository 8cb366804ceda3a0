"""From an embeddings table to arrays: the embedding per `features`, reference features, cosine neighbours.

`features` picks the embedding: "video", "audio", or "audio-visual" = [v̂, â] / √2, so that the cosine
of two audio-visual rows is the mean of the two modality cosines. A row with no audio gets a zero audio
part (no evidence either way). Reference tables put a non-learned representation in the `video` column,
so every task runs on them unchanged with features="video".
"""

from __future__ import annotations

import numpy as np
import polars as pl

from tkds.errors import TkdsError

FEATURES = ("video", "audio", "audio-visual")
REFERENCES = ("metadata_only", "sound_onehot")
# What is known of a video before looking at it: its author's counts and how long it has been up.
METADATA_COLUMNS = ("followers", "author_hearts", "author_videos", "age_days")
# One-hot columns beyond this many sounds would not fit in memory on a real crawl (~10⁵ sounds).
SOUND_ONEHOT_MAX_DIMS = 2048
# solo-learn's weighted-kNN temperature: votes weigh exp(cos / T).
KNN_TEMPERATURE = 0.07
# Similarity rows per block: keeps a block × gallery matrix near 100 MB on a large gallery.
CHUNK = 512


def missing_reason(table: pl.DataFrame, columns: tuple[str, ...]) -> str | None:
    """Why `table` cannot serve a task that needs `columns`, or None when each has a value somewhere."""
    for column in columns:
        if column not in table.columns:
            return f"no '{column}' column in the embeddings table"
        if table[column].null_count() == table.height:
            return f"'{column}' is null in every row"
    return None


def feature_skip_reason(table: pl.DataFrame, features: str) -> str | None:
    """Why `features` cannot be built from `table`, or None."""
    if features not in FEATURES:
        raise TkdsError(f"unknown features '{features}'; choose one of {', '.join(FEATURES)}")
    modalities = {"video": ("video",), "audio": ("audio",), "audio-visual": ("video", "audio")}[features]
    reason = missing_reason(table, modalities)
    return None if reason is None else f"no {features} features: {reason}"


def column(table: pl.DataFrame, name: str) -> pl.Series:
    """`table[name]`, or an all-null series when the table lacks that column."""
    return table[name] if name in table.columns else pl.Series(name, [None] * table.height)


def codes(values: pl.Series) -> np.ndarray:
    """Integer codes of a series' distinct values, −1 for null."""
    return values.rank("dense").fill_null(0).to_numpy().astype(np.int64) - 1


def in_split(table: pl.DataFrame, split: str) -> np.ndarray:
    """Boolean mask of the rows in `split` ("train", "val" or "test")."""
    return (table["split"] == split).fill_null(False).to_numpy()


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; an all-zero row stays zero."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def _column_matrix(table: pl.DataFrame, column: str) -> np.ndarray:
    """A list[f32] column as an (n, d) float32 matrix; null rows become zeros."""
    width = int(table[column].list.len().max())
    matrix = table[column].list.to_array(width).to_numpy().astype(np.float32)
    return np.nan_to_num(matrix, nan=0.0)


def embedding(table: pl.DataFrame, features: str) -> np.ndarray:
    """The (n, d) embedding that `features` names, as stored (audio-visual: from the normalised parts).

    Not renormalised: a learned embedding is unit-length already, and a reference one keeps its scale
    for the linear read-outs; whatever compares by cosine normalises first.
    """
    reason = feature_skip_reason(table, features)
    if reason is not None:
        raise TkdsError(f"{reason}; choose features the table has")
    if features == "audio-visual":
        both = [l2_normalise(_column_matrix(table, c)) for c in ("video", "audio")]
        return np.hstack(both) / np.sqrt(2.0)
    return _column_matrix(table, features)


def metadata_features(table: pl.DataFrame) -> np.ndarray:
    """log(1 + followers, author hearts, author videos, age in days), (n, 4); NaN where unknown."""
    return np.column_stack([column(table, c).cast(pl.Float64).log1p().to_numpy() for c in METADATA_COLUMNS])


def _metadata_only(table: pl.DataFrame) -> np.ndarray:
    """Author statistics, standardised with train rows only; unknown values sit at the train mean (0)."""
    stats = metadata_features(table)
    # Masked: a statistic unknown for every train row gets mean 0 and scale 1 instead of a NaN warning.
    train = np.ma.masked_invalid(stats[in_split(table, "train")])
    spread = train.std(axis=0).filled(0.0)
    centred = (stats - train.mean(axis=0).filled(0.0)) / np.where(spread > 0, spread, 1.0)
    return np.nan_to_num(centred, nan=0.0)


def _sound_onehot(table: pl.DataFrame) -> np.ndarray:
    """One-hot of music_id over sounds used at least twice (a sound used once matches nothing: zero row)."""
    counts = table["music_id"].drop_nulls().value_counts(sort=True).filter(pl.col("count") >= 2)
    sounds = counts["music_id"].head(SOUND_ONEHOT_MAX_DIMS).to_list()
    column = {sound: i for i, sound in enumerate(sounds)}
    onehot = np.zeros((table.height, max(1, len(sounds))), dtype=np.float32)
    for row, sound in enumerate(table["music_id"].to_list()):
        if sound in column:
            onehot[row, column[sound]] = 1.0
    return onehot


def reference_table(table: pl.DataFrame, kind: str) -> pl.DataFrame:
    """`table` with `video` replaced by a reference representation and `audio` emptied; run it with "video".

    metadata_only: the author's log followers, hearts and videos — what the content must beat.
    sound_onehot: which reused sound the video has — how much "audio" wins by matching sounds.
    """
    builders = {"metadata_only": _metadata_only, "sound_onehot": _sound_onehot}
    if kind not in builders:
        raise TkdsError(f"unknown reference '{kind}'; choose one of {', '.join(REFERENCES)}")
    video = pl.Series("video", builders[kind](table)).cast(pl.List(pl.Float32))
    return table.with_columns(video, pl.lit(None, dtype=pl.List(pl.Float32)).alias("audio"))


def cosine_neighbours(
    queries: np.ndarray, gallery: np.ndarray, k: int, exclude_self: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosines of each query's k most similar gallery rows, most similar first.

    exclude_self: queries are the gallery, and a row is not its own neighbour.
    """
    queries, gallery = l2_normalise(queries), l2_normalise(gallery)
    k = min(k, gallery.shape[0] - exclude_self)
    indices, sims = [], []
    for start in range(0, queries.shape[0], CHUNK):
        sim = queries[start : start + CHUNK] @ gallery.T
        if exclude_self:
            rows = np.arange(sim.shape[0])
            sim[rows, start + rows] = -np.inf
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        top_sim = np.take_along_axis(sim, top, axis=1)
        order = np.argsort(-top_sim, axis=1, kind="stable")
        indices.append(np.take_along_axis(top, order, axis=1))
        sims.append(np.take_along_axis(top_sim, order, axis=1))
    return np.vstack(indices), np.vstack(sims)


def knn_vote(queries: np.ndarray, gallery: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """Weighted kNN scores (n_queries, n_targets): Σ over the k nearest gallery rows of exp(cos / T) · target.

    targets is (n_gallery, n_targets), one-hot for classes or multi-hot for tags.
    """
    indices, sims = cosine_neighbours(queries, gallery, k)
    weights = np.exp(sims / KNN_TEMPERATURE)
    scores = np.zeros((queries.shape[0], targets.shape[1]))
    # One neighbour rank at a time: a (queries, k, targets) array would not fit for thousands of tags.
    for rank in range(indices.shape[1]):
        scores += weights[:, rank, None] * targets[indices[:, rank]]
    return scores
