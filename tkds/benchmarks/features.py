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
# A similarity block is at most QUERY_BLOCK × GALLERY_BLOCK float32 (64 MB), whatever the table's size:
# never a queries × gallery matrix, and blocks big enough for the matrix product to run at full speed.
QUERY_BLOCK = 1024
GALLERY_BLOCK = 16384
# Entries of a block of whole similarity rows (retrieval ranks the full gallery): 2²⁴ keeps the block and
# the arrays derived from it (about 20 bytes an entry) near 350 MB, however large the gallery.
ROW_BLOCK_ENTRIES = 2**24


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
    matrix = table[column].list.to_array(width).to_numpy()
    # One copy at most (a wide table's matrix is hundreds of MB): none when polars hands over a writable one.
    matrix = matrix.astype(np.float32, copy=not matrix.flags.writeable)
    return np.nan_to_num(matrix, nan=0.0, copy=False)


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
        return np.hstack(both) / np.float32(np.sqrt(2.0))  # float32, as the parts are
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


def row_block(gallery_rows: int) -> int:
    """How many whole similarity rows over a gallery of `gallery_rows` fit in ROW_BLOCK_ENTRIES."""
    return max(1, ROW_BLOCK_ENTRIES // max(1, gallery_rows))


def top_k_scores(
    queries: np.ndarray,
    gallery: np.ndarray,
    k: int,
    exclude_self: bool = False,
    gallery_bias: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of each query's k highest q·g (+ gallery_bias[g]) gallery rows, highest first.

    Exact, in QUERY_BLOCK × GALLERY_BLOCK blocks: each block's top k is merged into a running top k, so
    memory stays flat however large the gallery. Ties at the k-th place go to either row.
    exclude_self: queries are the gallery, and a row is not its own neighbour.
    """
    import torch  # a core dependency; its matrix product and top-k use every core (numpy's top-k one)

    query_rows = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    gallery_rows = torch.from_numpy(np.ascontiguousarray(gallery, dtype=np.float32))
    bias = None if gallery_bias is None else torch.from_numpy(np.asarray(gallery_bias, dtype=np.float32))
    k = min(k, gallery_rows.shape[0] - exclude_self)
    indices = np.empty((query_rows.shape[0], k), dtype=np.int64)
    scores = np.empty((query_rows.shape[0], k), dtype=np.float32)
    for q_start in range(0, query_rows.shape[0], QUERY_BLOCK):
        block = query_rows[q_start : q_start + QUERY_BLOCK]
        best_scores = torch.empty((block.shape[0], 0))
        best_indices = torch.empty((block.shape[0], 0), dtype=torch.int64)
        for g_start in range(0, gallery_rows.shape[0], GALLERY_BLOCK):
            sim = block @ gallery_rows[g_start : g_start + GALLERY_BLOCK].T
            if bias is not None:
                sim += bias[g_start : g_start + GALLERY_BLOCK]
            if exclude_self:
                # Query row r is gallery column q_start + r − g_start, where that falls in this block.
                rows = torch.arange(block.shape[0])
                columns = q_start + rows - g_start
                inside = (columns >= 0) & (columns < sim.shape[1])
                sim[rows[inside], columns[inside]] = -torch.inf
            top_scores, top = torch.topk(sim, min(k, sim.shape[1]), dim=1)
            best_scores = torch.cat([best_scores, top_scores], dim=1)
            best_indices = torch.cat([best_indices, top + g_start], dim=1)
            if g_start > 0:  # merge, which also keeps the running top k sorted
                best_scores, kept = torch.topk(best_scores, min(k, best_scores.shape[1]), dim=1)
                best_indices = best_indices.gather(1, kept)
        scores[q_start : q_start + block.shape[0]] = best_scores.numpy()
        indices[q_start : q_start + block.shape[0]] = best_indices.numpy()
    return indices, scores


def cosine_neighbours(
    queries: np.ndarray, gallery: np.ndarray, k: int, exclude_self: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosines of each query's k most similar gallery rows, most similar first.

    exclude_self: queries are the gallery, and a row is not its own neighbour.
    """
    return top_k_scores(l2_normalise(queries), l2_normalise(gallery), k, exclude_self)


def knn_vote(queries: np.ndarray, gallery: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """Weighted kNN scores (n_queries, n_targets): Σ over the k nearest gallery rows of exp(cos / T) · target.

    targets is (n_gallery, n_targets), one-hot for classes or multi-hot for tags.
    """
    return neighbour_vote(*cosine_neighbours(queries, gallery, k), targets)


def neighbour_vote(indices: np.ndarray, sims: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """knn_vote's scores from each query's neighbours (`cosine_neighbours`' indices and cosines)."""
    weights = np.exp(sims / KNN_TEMPERATURE)
    scores = np.zeros((indices.shape[0], targets.shape[1]))
    # One neighbour rank at a time: a (queries, k, targets) array would not fit for thousands of tags.
    for rank in range(indices.shape[1]):
        scores += weights[:, rank, None] * targets[indices[:, rank]]
    return scores
