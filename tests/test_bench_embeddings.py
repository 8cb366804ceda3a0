"""`tkds bench --embeddings NAME=PATH`: embeddings computed elsewhere, scored through the real command line
on the real small shard set, next to a trained cell whose own embeddings they are."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tkds.benchmarks.leaderboard import best_learned
from tkds.benchmarks.run import bench
from tkds.cli import main
from tkds.errors import TkdsError
from tkds.serve.predictor import choose_row


def tkds(capsys: pytest.CaptureFixture, *args: str | Path) -> tuple[int, str]:
    """Run the tkds command line in this process: (exit code, stderr)."""
    with pytest.raises(SystemExit) as exit_:
        main([str(arg) for arg in args])
    return exit_.value.code, capsys.readouterr().err


def bench_args(shards: Path, run: Path, *imports: str, methods: str = "random") -> list:
    extra = [part for spec in imports for part in ("--embeddings", spec)]
    return ["bench", "--shards", shards, "--out", run, "--methods", methods, "--seeds", "1", *extra]


def files_of(run: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}


def rows_of(run: Path, name: str) -> dict:
    return json.loads((run / name / "seed0" / "metrics.json").read_text())["rows"]


@pytest.fixture(scope="module")
def trained(built_shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run with one trained cell (random, audio-visual: video and audio embeddings) and its parquet."""
    run = tmp_path_factory.mktemp("trained") / "run"
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in bench_args(built_shards, run)])
    assert exit_.value.code == 0
    assert (run / "random" / "seed0" / "embeddings.parquet").is_file()
    return run


@pytest.fixture(scope="module")
def cell_table(trained: Path) -> pl.DataFrame:
    """The trained cell's embeddings.parquet, exactly as the bench wrote it."""
    return pl.read_parquet(trained / "random" / "seed0" / "embeddings.parquet")


@pytest.fixture(scope="module")
def scored(built_shards: Path, trained: Path, cell_table: pl.DataFrame, tmp_path_factory) -> Path:
    """The trained run, plus `mine`: that cell's table scored as imported embeddings."""
    run = tmp_path_factory.mktemp("scored") / "run"
    shutil.copytree(trained, run)
    cell_table.write_parquet(run.parent / "good.parquet")
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in bench_args(built_shards, run, f"mine={run.parent / 'good.parquet'}")])
    assert exit_.value.code == 0 and (run / "mine" / "seed0" / "metrics.json").is_file()
    return run


def save_npz(path: Path, table: pl.DataFrame, *modalities: str) -> Path:
    arrays = {m: np.stack(table[m].to_numpy()).astype(np.float32) for m in modalities}
    np.savez(path, id=np.array(table["key"].to_list()), **arrays)
    return path


def test_a_cells_own_embeddings_score_identically_as_parquet_and_npz(
    built_shards: Path, trained: Path, cell_table: pl.DataFrame, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    parquet = tmp_path / "emb.parquet"
    shutil.copy(trained / "random" / "seed0" / "embeddings.parquet", parquet)  # accepted as is
    npz = save_npz(tmp_path / "emb.npz", cell_table, "video", "audio")
    sound = save_npz(tmp_path / "sound.npz", cell_table, "audio")
    imports = [f"pq={parquet}", f"npz={npz}", f"sound={sound}"]
    code, err = tkds(capsys, *bench_args(built_shards, run, *imports))
    assert code == 0, err[-3000:]
    assert "3 new, 1 reused" in " ".join(err.split())  # random/seed0 reused
    trained_rows = rows_of(trained, "random")
    assert set(trained_rows) == {"video", "audio", "audio-visual"}
    assert rows_of(run, "pq") == trained_rows
    assert rows_of(run, "npz") == trained_rows
    assert rows_of(run, "sound") == {"audio": trained_rows["audio"]}
    board = json.loads((run / "leaderboard.json").read_text())
    rows = {(r["method"], r["features"]): r for r in board["rows"]}
    assert rows["pq", "video"]["imported"]["widths"] == {"video": 128, "audio": 128}
    assert best_learned(board["rows"])["method"] == "random"
    markdown = (run / "leaderboard.md").read_text()
    assert "| npz (imported embeddings, audio-visual) |" in markdown
    assert "sound (imported embeddings, audio)" in (run / "leaderboard.html").read_text()


def test_an_imported_row_is_ranked_but_never_served(
    built_shards: Path, trained: Path, cell_table: pl.DataFrame, tmp_path: Path, capsys
) -> None:
    """Its id column named id, its video a fixed-size float64 array; a run with no learned method."""
    run, path = tmp_path / "run", tmp_path / "arrays.parquet"
    shutil.copytree(trained, run)
    pl.DataFrame({"id": cell_table["key"], "video": np.stack(cell_table["video"].to_numpy())}).cast(
        {"video": pl.Array(pl.Float64, 128)}
    ).write_parquet(path)
    code, err = tkds(capsys, *bench_args(built_shards, run, f"arrays={path}", methods="metadata-only"))
    assert code == 0, err[-3000:]
    assert rows_of(run, "arrays") == {"video": rows_of(trained, "random")["video"]}
    rows = json.loads((run / "leaderboard.json").read_text())["rows"]
    arrays = next(r for r in rows if r["method"] == "arrays")
    assert arrays["metrics"]["classification"] and arrays["metrics"]["likes"]
    assert best_learned(rows) is None
    with pytest.raises(TkdsError, match="the run has no learned method with results to serve"):
        choose_row(rows, None)
    with pytest.raises(TkdsError, match="--method arrays has no results in this run"):
        choose_row(rows, "arrays")


def test_tkds_embed_of_every_split_scores_as_the_trained_cell(
    built_shards: Path, trained: Path, tmp_path: Path, capsys
) -> None:
    checkpoint = trained / "random" / "seed0" / "checkpoint.pt"
    parts = []
    for split in ("train", "val", "test"):
        out = tmp_path / f"{split}.parquet"
        args = ["--checkpoint", checkpoint, "--shards", built_shards, "--split", split, "--out", out]
        code, err = tkds(capsys, "embed", *args, "--device", "cpu")
        assert code == 0, err[-2000:]
        parts.append(pl.read_parquet(out))
    pl.concat(parts).write_parquet(tmp_path / "all.parquet")
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    code, err = tkds(capsys, *bench_args(built_shards, run, f"embedded={tmp_path / 'all.parquet'}"))
    assert code == 0, err[-3000:]
    assert rows_of(run, "embedded") == rows_of(trained, "random")


def test_a_rerun_reuses_the_imported_cell_and_a_changed_file_is_scored_again(
    built_shards: Path, trained: Path, cell_table: pl.DataFrame, tmp_path: Path, capsys
) -> None:
    run, parquet = tmp_path / "run", tmp_path / "emb.parquet"
    shutil.copytree(trained, run)
    cell_table.write_parquet(parquet)
    assert tkds(capsys, *bench_args(built_shards, run, f"mine={parquet}"))[0] == 0
    scored = (run / "mine" / "seed0" / "metrics.json").read_bytes()
    code, err = tkds(capsys, *bench_args(built_shards, run, f"mine={parquet}"))
    assert code == 0 and "0 new, 2 reused" in " ".join(err.split())
    assert (run / "mine" / "seed0" / "metrics.json").read_bytes() == scored
    cell_table.drop("audio").write_parquet(parquet)  # the same path, other contents: video only now
    code, err = tkds(capsys, *bench_args(built_shards, run, f"mine={parquet}"))
    assert code == 0 and "1 new, 1 reused" in " ".join(err.split())
    assert rows_of(run, "mine") == {"video": rows_of(trained, "random")["video"]}
    record = json.loads((run / "mine" / "seed0" / "metrics.json").read_text())
    assert record["modality"] == "video" and record["fingerprint"] != json.loads(scored)["fingerprint"]


def _parquet(change: Callable[[pl.DataFrame], pl.DataFrame]) -> Callable[[pl.DataFrame, Path], Path]:
    def write(table: pl.DataFrame, path: Path) -> Path:
        change(table).write_parquet(path)
        return path

    return write


def _values(table: pl.DataFrame, row: int, value: float) -> pl.DataFrame:
    video = table["video"].to_list()
    video[row] = [value, *video[row][1:]]
    return table.with_columns(pl.Series("video", video, dtype=pl.List(pl.Float32)))


def _bytes(content: bytes) -> Callable[[pl.DataFrame, Path], Path]:
    def write(_: pl.DataFrame, path: Path) -> Path:
        path.write_bytes(content)
        return path

    return write


def _npz(**arrays: Callable[[pl.DataFrame], np.ndarray]) -> Callable[[pl.DataFrame, Path], Path]:
    def write(table: pl.DataFrame, path: Path) -> Path:
        with path.open("wb") as handle:  # a file of any name: told apart by its content
            np.savez(handle, **{name: make(table) for name, make in arrays.items()})
        return path

    return write


def _ids(table: pl.DataFrame) -> np.ndarray:
    return np.array(table["key"].to_list())


def _video(table: pl.DataFrame) -> np.ndarray:
    return np.stack(table["video"].to_numpy())


BAD_FILES = {
    "missing ids": (
        _parquet(lambda t: t.head(t.height - 4)),
        "no row for 4 ids (",
        " and 1 more) of the 12 videos of --shards; embed every split",
    ),
    "extra ids": (
        _parquet(lambda t: pl.concat([t, t.head(1).with_columns(key=pl.lit("123"))])),
        "1 id ('123') not among the videos of --shards",
    ),
    "repeated ids": (_parquet(lambda t: pl.concat([t, t.tail(1)])), "1 id (", "with more than one row"),
    "float ids": (
        _parquet(lambda t: t.with_columns(pl.col("key").cast(pl.Float64))),
        "its ids are Float64; store video ids as strings or integers",
    ),
    "inconsistent widths": (
        _parquet(lambda t: t.with_columns(pl.col("video").list.head(pl.int_range(pl.len()) + 120))),
        "video rows have widths from 120 to 128; every row must have the same width",
    ),
    "NaN": (_parquet(lambda t: _values(t, 3, float("nan"))), "video holds NaN, infinite", "for 1 id ("),
    "inf": (_parquet(lambda t: _values(t, 0, float("inf"))), "video holds NaN, infinite"),
    "beyond float32": (
        _parquet(
            lambda t: t.with_columns(
                pl.col("video").cast(pl.List(pl.Float64)).list.eval(pl.element() * 1e300)
            )
        ),
        "video holds NaN, infinite or missing values (or numbers beyond float32) for 12 ids",
    ),
    "null video": (
        _parquet(
            lambda t: t.with_columns(
                video=pl.when(pl.int_range(pl.len()) == 2).then(None).otherwise(pl.col("video"))
            )
        ),
        "video is null for 1 id (",
    ),
    "text embeddings": (
        _parquet(lambda t: t.with_columns(pl.col("audio").cast(pl.List(pl.String)))),
        "column audio is List(String), not a list of numbers",
    ),
    "no embeddings": (_parquet(lambda t: t.drop("video", "audio")), "no video or audio column"),
    "no audio at all, no video": (
        _parquet(lambda t: t.drop("video").with_columns(audio=pl.lit(None, dtype=pl.List(pl.Float32)))),
        "audio is null in every row and there is no video",
    ),
    "no id column": (_parquet(lambda t: t.drop("key")), "the file has neither key nor id"),
    "two id columns": (_parquet(lambda t: t.with_columns(id=pl.col("key"))), "the file has both key and id"),
    "not parquet or npz": (_bytes(b"key,video\n1,2\n"), "neither a parquet nor an npz file"),
    "corrupt parquet": (_bytes(b"PAR1" + bytes(64) + b"PAR1"), "unreadable ("),
    "corrupt npz": (_bytes(b"PK\x03\x04" + bytes(64)), "unreadable ("),
    "npz of pickles": (_npz(id=_ids, video=lambda t: np.array([object()] * t.height)), "unreadable ("),
    "npz 1-D video": (_npz(id=_ids, video=lambda t: _video(t)[:, 0]), "video is a float32 array of shape"),
    "npz rows ≠ ids": (_npz(id=_ids, video=lambda t: _video(t)[:-1]), "save one row of numbers per id"),
    "npz zero width": (_npz(id=_ids, video=lambda t: _video(t)[:, :0]), "video rows are 0 wide"),
    "npz float ids": (_npz(id=lambda t: _ids(t).astype(float), video=_video), "not 1-D ids"),
    "npz without ids": (_npz(video=_video), "no id array"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_file_is_refused_in_one_line_and_the_run_keeps_its_cells(
    built_shards: Path, scored: Path, cell_table: pl.DataFrame, tmp_path: Path, capsys, case: str
) -> None:
    run = tmp_path / "run"
    shutil.copytree(scored, run)
    before = files_of(run)
    write, *messages = BAD_FILES[case]
    bad = write(cell_table, tmp_path / "bad.file")
    code, err = tkds(capsys, *bench_args(built_shards, run, f"mine={bad}"))
    assert code == 1 and err.startswith(f"tkds: error: --embeddings mine={bad}: "), err[-2000:]
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert all(message in err for message in messages), err
    assert files_of(run) == before  # the scored cell of the good file, and the leaderboard, untouched


BAD_OPTIONS = {
    "no =": (["emb.parquet"], "--embeddings 'emb.parquet': write NAME=PATH"),
    "a path as name": (["../x=FILE"], "--embeddings name '../x': use 1 to 40 lower-case letters"),
    "a slash": (["a/b=FILE"], "--embeddings name 'a/b'"),
    "upper case": (["Clip=FILE"], "--embeddings name 'Clip'"),
    "empty name": (["=FILE"], "--embeddings name ''"),
    "a built-in method": (["simclr=FILE"], "--embeddings name simclr is a method's name"),
    "a method of the run": (["random=FILE"], "--embeddings name random is a method's name"),
    "the ceiling row": (["bayes-optimal=FILE"], "--embeddings name bayes-optimal is a method's name"),
    "twice": (["a=FILE", "a=FILE"], "--embeddings name a is given twice"),
    "no such file": (["a=MISSING"], "does not exist; give a parquet or npz file"),
    "a folder": (["a=FOLDER"], "is a folder; give a parquet or npz file"),
}


@pytest.mark.parametrize("case", BAD_OPTIONS)
def test_a_bad_option_is_refused_in_one_line_before_anything_is_written(
    built_shards: Path, cell_table: pl.DataFrame, tmp_path: Path, capsys, case: str
) -> None:
    good = tmp_path / "good.parquet"
    cell_table.write_parquet(good)
    where = {"FILE": str(good), "MISSING": str(tmp_path / "none.parquet"), "FOLDER": str(tmp_path)}
    values, message = BAD_OPTIONS[case]
    for key, path in where.items():
        values = [value.replace(key, path) for value in values]
    run = tmp_path / "run"
    code, err = tkds(capsys, *bench_args(built_shards, run, *values))
    assert code == 1 and err.startswith("tkds: error: "), err[-2000:]
    assert len(err.splitlines()) == 1 and message in err, err
    assert not run.exists()


def test_the_library_checks_its_embeddings_argument(built_shards: Path, tmp_path: Path) -> None:
    (tmp_path / "f.npz").write_bytes(b"")
    for embeddings, message in [
        ([("../up", tmp_path / "f.npz")], "--embeddings name '../up'"),
        ({"metadata-only": tmp_path / "f.npz"}, "is a method's name"),
        ([42], "give NAME=PATH strings or (name, path) pairs"),
    ]:
        with pytest.raises(TkdsError, match=re.escape(message)):
            bench(built_shards, tmp_path / "run", ("metadata-only",), seeds=1, embeddings=embeddings)
    assert not (tmp_path / "run").exists()
