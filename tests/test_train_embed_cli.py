"""`tkds train` and `tkds embed` through the real command line, on the real small shard set.

The CLI runs in a subprocess that first registers `test-tiny`, cpu-tiny shrunk to batches of 2 (the
small set has a handful of training videos), then calls `tkds.cli.main` as the `tkds` script does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tkds.dataset.loader import read_metas

REPO = Path(__file__).resolve().parents[1]
TINY_CLI = """
import dataclasses, sys
from tkds.models.presets import PRESETS
PRESETS["test-tiny"] = dataclasses.replace(
    PRESETS["cpu-tiny"], name="test-tiny", frames=4, size=32, audio_seconds=0.4, n_mels=16, batch_size=2,
    epochs=3, proj_hidden_dim=32, proj_dim=16, queue_size=16, checkpoint_every=1,
)
from tkds.cli import main
main(sys.argv[1:])
"""


def tkds(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", TINY_CLI, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )


def train_args(shards: Path, out: Path, *extra: str) -> list:
    return ["train", "--shards", shards, "--out", out, "--preset", "test-tiny", "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def trained(built_shards: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """av-simclr trained 2 steps, then resumed to the end, then re-run (reused)."""
    out = tmp_path_factory.mktemp("train") / "run"
    first = tkds(*train_args(built_shards, out, "--method", "av-simclr", "--max-steps", "2"))
    logged = (out / "train.jsonl").read_text().splitlines()
    resumed = tkds(*train_args(built_shards, out, "--method", "av-simclr"))
    again = tkds(*train_args(built_shards, out, "--method", "av-simclr"))
    return {"out": out, "first": first, "logged": logged, "resumed": resumed, "again": again}


@pytest.mark.slow
def test_train_runs_resumes_and_reuses(trained: dict) -> None:
    first, resumed, again = trained["first"], trained["resumed"], trained["again"]
    assert first.returncode == 0, first.stderr
    assert len(trained["logged"]) == 2 and (trained["out"] / "checkpoint.pt").is_file()
    assert "steps" in first.stderr and "2 of " in first.stderr and "re-run to resume" in first.stderr
    assert "new" in first.stderr and str(trained["out"] / "checkpoint.pt") in first.stderr
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stderr and "finished" in resumed.stderr
    log = [json.loads(line) for line in (trained["out"] / "train.jsonl").read_text().splitlines()]
    assert [record["step"] for record in log] == list(range(1, len(log) + 1)) and len(log) > 2
    assert again.returncode == 0, again.stderr
    assert "reused" in again.stderr and f"{len(log)} of {len(log)}" in again.stderr


@pytest.mark.slow
def test_embed_writes_one_row_per_test_video(built_shards: Path, trained: dict, tmp_path: Path) -> None:
    out = tmp_path / "emb.parquet"
    args = ["embed", "--checkpoint", trained["out"] / "checkpoint.pt", "--shards", built_shards]
    result = tkds(*args, "--split", "test", "--out", out, "--clips", "2", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    table = pl.read_parquet(out)
    test_ids = [meta["id"] for *_, meta in read_metas(built_shards, "test")]
    assert sorted(table["key"]) == sorted(test_ids) and table["key"].n_unique() == table.height
    assert set(table["split"]) == {"test"}
    assert table["video"].list.len().unique().to_list() == [128]
    assert table["audio"].drop_nulls().list.len().unique().to_list() == [128]
    assert f"{table.height} videos of the test split" in result.stderr

    again = tkds(*args, "--split", "test", "--out", out)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"tkds: error: --out {out} exists; choose another --out, or delete it to embed again"
    ]
    assert pl.read_parquet(out).equals(table)


@pytest.mark.slow
def test_a_visual_method_writes_no_audio_column(built_shards: Path, tmp_path: Path) -> None:
    run = tkds(*train_args(built_shards, tmp_path / "run", "--method", "simclr", "--max-steps", "1"))
    assert run.returncode == 0, run.stderr
    out = tmp_path / "emb.parquet"
    result = tkds("embed", "--checkpoint", tmp_path / "run" / "checkpoint.pt", "--shards", built_shards,
                  "--split", "val", "--out", out, "--clips", "1", "--device", "cpu")  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = pl.read_parquet(out)
    assert "audio" not in table.columns and set(table["split"]) == {"val"}


BAD_TRAIN = {
    "unknown method": (["--method", "dino"], 1, "unknown method 'dino'; use one of: random,"),
    "unknown preset": (["--method", "simclr", "--preset", "huge"], 2, "'huge' is not one of"),
    "negative seed": (["--method", "simclr", "--seed", "-1"], 1, "--seed -1: use a whole number from 0"),
    "zero max steps": (["--method", "simclr", "--max-steps", "0"], 1, "--max-steps 0: use a whole number"),
    "bad device": (["--method", "simclr", "--device", "tpu"], 1, "--device tpu: use cpu, cuda or cuda:N"),
}


@pytest.mark.parametrize("case", BAD_TRAIN, ids=list(BAD_TRAIN))
def test_bad_train_options_are_one_line_errors(built_shards: Path, tmp_path: Path, case: str) -> None:
    extra, code, message = BAD_TRAIN[case]
    args = ["train", "--shards", built_shards, "--out", tmp_path / "run", *extra]
    if "--preset" not in extra:
        args += ["--preset", "test-tiny"]
    result = tkds(*args)
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_shards_without_a_train_split_are_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = tkds("train", "--shards", tmp_path / "empty", "--out", tmp_path / "run", "--method", "simclr")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no split 'train' in" in lines[0] and "tkds shard" in lines[0]


def test_bad_embed_inputs_are_one_line_errors(built_shards: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nothing.pt"
    args = ["embed", "--shards", built_shards, "--out", tmp_path / "e.parquet"]
    result = tkds(*args, "--checkpoint", missing)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"tkds: error: --checkpoint {missing} is not a file; train one with tkds train"
    ]
    result = tkds(*args, "--checkpoint", missing, "--split", "dev")
    assert result.returncode == 2 and "'dev' is not one of" in result.stderr
    assert not (tmp_path / "e.parquet").exists()


def test_python_m_tkds_models_train_is_tkds_train() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tkds.models.train", "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0 and "Usage: tkds train" in result.stdout and "--max-steps" in result.stdout


@pytest.mark.slow
def test_train_under_torchrun_reports_once(built_shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    result = subprocess.run(
        [*launch, "--no-python", sys.executable, "-c", TINY_CLI,
         *map(str, train_args(built_shards, out, "--method", "simclr", "--max-steps", "2"))],
        capture_output=True, text=True, cwd=REPO,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Trained simclr in") == 1 and "2 of " in result.stderr
    assert len((out / "train.jsonl").read_text().splitlines()) == 2
