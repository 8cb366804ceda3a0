"""Embeddings computed elsewhere, scored by `tkds bench --embeddings NAME=PATH` next to the trained rows.

A file is a parquet table or an npz archive, told apart by its first bytes (not its name):
- parquet: one id column, `key` (as `tkds embed` and the bench's cells write it) or `id`, of strings or
  integers, and a `video` and/or `audio` column of equal-width lists (or arrays) of numbers. A null audio
  row is a video without audio; every other column (a tkds file's metadata) is ignored.
- npz (numpy.savez): an `id` array of strings or integers, and `video` and/or `audio` 2-D arrays of
  numbers with one row per id.

The file must cover the shards exactly: an id that is not in the shards is refused (embeddings of other
videos, or of other shards), and so is a shards' video without a row (every split is read by the tasks).
The metadata the tasks read (splits, labels, likes, …) comes from the shards, never from the file.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from tkds.errors import TkdsError
from tkds.ids import preview

# A NAME becomes the folder out/NAME: lower case (no two names differ by case alone), never '/' or '.'.
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
ID_COLUMNS = ("key", "id")
MODALITIES = ("video", "audio")
MAX_WIDTH = 65536
SHOWN_IDS = 3  # ids named in a message; the rest are counted
PARQUET_MAGIC, ZIP_MAGIC = b"PAR1", b"PK\x03\x04"


@dataclass(frozen=True)
class ImportSpec:
    """One `--embeddings NAME=PATH`, checked: a plain name and an existing file."""

    name: str
    path: Path

    @property
    def option(self) -> str:
        return f"--embeddings {self.name}={self.path}"


@dataclass(frozen=True)
class Imported:
    """A checked embeddings file: the table the tasks read, and what it holds."""

    table: pl.DataFrame  # the shards' metadata columns, then `video` and `audio` (list[f32], null if absent)
    modality: str  # video, audio or audio-visual
    widths: dict[str, int]  # modality → embedding width

    @property
    def feature_sets(self) -> list[str]:
        """What the tasks score: each modality present, and both together when there are two."""
        return ["video", "audio", "audio-visual"] if self.modality == "audio-visual" else [self.modality]


def check_imports(
    embeddings: Mapping[str, str | Path] | Iterable[str | tuple[str, str | Path]], taken: Iterable[str]
) -> tuple[ImportSpec, ...]:
    """`--embeddings` values (NAME=PATH strings, (name, path) pairs, or a mapping) as checked specs.

    A name must be plain (it names a folder of the run), given once, and not one of `taken` (the
    methods' names); the path must be an existing file. Each refusal is one line.
    """
    items = embeddings.items() if isinstance(embeddings, Mapping) else embeddings
    taken = set(taken)
    specs: dict[str, ImportSpec] = {}
    for item in items:
        if isinstance(item, str):
            name, sep, path = item.partition("=")
            if not sep or not path:
                raise TkdsError(f"--embeddings {preview(item)}: write NAME=PATH, e.g. clip=clip.parquet")
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], str | Path):
            name, path = item
        else:
            raise TkdsError(f"--embeddings {preview(item)}: give NAME=PATH strings or (name, path) pairs")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise TkdsError(
                f"--embeddings name {preview(name)}: use 1 to 40 lower-case letters, digits, '-' or '_', "
                "starting with a letter or digit (it names the run's folder for these embeddings)"
            )
        if name in taken:
            raise TkdsError(f"--embeddings name {name} is a method's name; choose another name")
        if name in specs:
            raise TkdsError(f"--embeddings name {name} is given twice; give each file its own name")
        path = Path(path)
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "does not exist"
            raise TkdsError(f"--embeddings {name}={path}: {what}; give a parquet or npz file")
        specs[name] = ImportSpec(name, path)
    return tuple(specs.values())


def read_embeddings(spec: ImportSpec, metadata: pl.DataFrame) -> Imported:
    """Read and check `spec`'s file against the shards' `metadata` (run.metadata_table), in one line each.

    The rows keep the file's order; each gets its metadata from the shards.
    """
    try:
        with spec.path.open("rb") as handle:
            magic = handle.read(4)
        if magic == PARQUET_MAGIC:
            ids, columns = _read_parquet(spec)
        elif magic == ZIP_MAGIC:
            ids, columns = _read_npz(spec)
        else:
            raise TkdsError(
                f"{spec.option}: neither a parquet nor an npz file (by its first bytes); "
                "write one with polars' write_parquet or numpy.savez"
            )
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, pl.exceptions.PolarsError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TkdsError(f"{spec.option}: unreadable ({preview(reason, 120)}); write it again") from None
    _check_ids(spec, ids, metadata["key"])
    widths = {name: _check_embeddings(spec, name, column, ids) for name, column in columns.items()}
    present = [name for name in MODALITIES if widths.get(name)]
    if not present:
        raise TkdsError(f"{spec.option}: audio is null in every row and there is no video; nothing to score")
    file = pl.DataFrame([
        ids.alias("key"),
        *(columns.get(name, pl.Series(name, [None] * len(ids))).cast(pl.List(pl.Float32)).alias(name)
          for name in MODALITIES),
    ])  # fmt: skip
    table = file.join(metadata, on="key", how="left", maintain_order="left")
    return Imported(
        table=table.select(*metadata.columns, *MODALITIES),
        modality="audio-visual" if len(present) == 2 else present[0],
        widths={name: widths[name] for name in present},
    )


def _read_parquet(spec: ImportSpec) -> tuple[pl.Series, dict[str, pl.Series]]:
    schema = pl.read_parquet_schema(spec.path)
    id_columns = [name for name in ID_COLUMNS if name in schema]
    if len(id_columns) != 1:
        found = "both key and id" if id_columns else "neither key nor id"
        raise TkdsError(f"{spec.option}: one id column is needed, named key or id; the file has {found}")
    wanted = [name for name in MODALITIES if name in schema]
    if not wanted:
        raise TkdsError(f"{spec.option}: no video or audio column; name the embedding columns so")
    for name in wanted:
        dtype = schema[name]
        if not isinstance(dtype, pl.List | pl.Array) or not dtype.inner.is_numeric():
            raise TkdsError(f"{spec.option}: column {name} is {dtype}, not a list of numbers per video")
    table = pl.read_parquet(spec.path, columns=[*id_columns, *wanted])
    return _ids(spec, table[id_columns[0]]), {name: table[name] for name in wanted}


def _read_npz(spec: ImportSpec) -> tuple[pl.Series, dict[str, pl.Series]]:
    with np.load(spec.path, allow_pickle=False) as archive:
        if "id" not in archive.files:
            raise TkdsError(f"{spec.option}: no id array; save the video ids as id=…")
        wanted = [name for name in MODALITIES if name in archive.files]
        if not wanted:
            raise TkdsError(f"{spec.option}: no video or audio array; save the embeddings as video=…")
        ids = archive["id"]
        if ids.ndim != 1 or ids.dtype.kind not in "iuU":
            raise TkdsError(f"{spec.option}: id is a {ids.dtype} array of shape {ids.shape}, not 1-D ids")
        columns = {}
        for name in wanted:
            matrix = archive[name]
            if matrix.ndim != 2 or matrix.dtype.kind not in "iuf" or len(matrix) != len(ids):
                raise TkdsError(
                    f"{spec.option}: {name} is a {matrix.dtype} array of shape {matrix.shape}; "
                    f"save one row of numbers per id, shape ({len(ids)}, width)"
                )
            columns[name] = pl.Series(name, matrix)
    return _ids(spec, pl.Series("key", ids)), columns


def _ids(spec: ImportSpec, ids: pl.Series) -> pl.Series:
    """The id column as strings; floats are refused (a 19-digit id does not survive them)."""
    if ids.dtype != pl.String and not ids.dtype.is_integer():
        raise TkdsError(f"{spec.option}: its ids are {ids.dtype}; store video ids as strings or integers")
    if not len(ids):
        raise TkdsError(f"{spec.option}: the file holds no rows; embed the videos of --shards into it")
    if ids.null_count():
        raise TkdsError(f"{spec.option}: {ids.null_count()} rows have no id; give every row its video id")
    return ids.cast(pl.String).alias("key")


def _counted(ids: pl.Series) -> str:
    """'N ids (a, b, c and N − 3 more)': a few named, the rest counted."""
    shown = ", ".join(preview(i) for i in ids.head(SHOWN_IDS).to_list())
    more = f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else ""
    return f"{len(ids)} {'id' if len(ids) == 1 else 'ids'} ({shown}{more})"


def _check_ids(spec: ImportSpec, ids: pl.Series, shard_ids: pl.Series) -> None:
    repeated = ids.filter(ids.is_duplicated()).unique(maintain_order=True)
    if len(repeated):
        raise TkdsError(f"{spec.option}: {_counted(repeated)} with more than one row; keep one per video")
    extra = ids.filter(~ids.is_in(shard_ids.implode()))
    if len(extra):
        raise TkdsError(
            f"{spec.option}: {_counted(extra)} not among the videos of --shards; embed the videos of "
            "those shards, or drop those rows"
        )
    missing = shard_ids.filter(~shard_ids.is_in(ids.implode()))
    if len(missing):
        raise TkdsError(
            f"{spec.option}: no row for {_counted(missing)} of the {len(shard_ids)} videos of --shards; "
            "embed every split of those shards"
        )


def _check_embeddings(spec: ImportSpec, name: str, column: pl.Series, ids: pl.Series) -> int:
    """The width of `column`'s rows (0 for an all-null audio column), after checking every row."""
    nulls = column.is_null()
    if nulls.all() and name == "audio":
        return 0  # no audio at all: scored as a video-only file
    if nulls.any() and name == "video":
        raise TkdsError(
            f"{spec.option}: video is null for {_counted(ids.filter(nulls))}; "
            "every video needs its video embedding"
        )
    lengths = column.filter(~nulls).list.len() if column.dtype == pl.List else None
    width = int(lengths.max()) if lengths is not None else column.dtype.size
    if lengths is not None and lengths.min() != width:
        raise TkdsError(
            f"{spec.option}: {name} rows have widths from {lengths.min()} to {width}; "
            "every row must have the same width"
        )
    if not 1 <= width <= MAX_WIDTH:
        raise TkdsError(f"{spec.option}: {name} rows are {width} wide; use 1 to {MAX_WIDTH} numbers per row")
    rows = column.filter(~nulls)
    matrix = (rows.list.to_array(width) if lengths is not None else rows).to_numpy()
    with np.errstate(over="ignore"):  # a number beyond float32 becomes inf, refused below
        bad = ~np.isfinite(matrix.astype(np.float32)).all(axis=1)
    if bad.any():
        raise TkdsError(
            f"{spec.option}: {name} holds NaN, infinite or missing values (or numbers beyond float32) for "
            f"{_counted(ids.filter(~nulls).filter(pl.Series(bad)))}; fix or drop those values"
        )
    return width
