"""`tkds bench` against careless and hostile use: other shards or settings into a finished run, stale or
foreign cells, a second process on the same --out, and bad option values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tkds.benchmarks.run import CELL_RECORD, RUN_RECORD, bench
from tkds.cli import main
from tkds.errors import TkdsError
from tkds.files import exclusive_folder

TKDS = [sys.executable, "-m", "tkds"]


def _bench_cli(shards: Path, out: Path, *options: str) -> subprocess.CompletedProcess:
    command = [*TKDS, "bench", "--shards", str(shards), "--out", str(out), *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def other_shards(synth_db: Path, small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same videos split with another seed: a different build, as a user might point at by mistake."""
    from tkds.dataset.build import ShardParams, build_shards

    out = tmp_path_factory.mktemp("other") / "shards"
    labels = str(small_corpus / "corpus.json")
    params = ShardParams(samples_per_shard=3, size=0, seed=1, labels=labels, ratios=(0.5, 0.25, 0.25))
    build_shards(synth_db, out, params, progress=False)
    return out


@pytest.mark.slow
def test_a_run_on_other_shards_or_settings_is_refused_and_nothing_is_reused(
    built_shards: Path, other_shards: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    bench(built_shards, run, ("metadata-only",), seeds=1, progress=False)
    files = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}

    other = _bench_cli(other_shards, run, "--methods", "metadata-only", "--seeds", "1")
    assert other.returncode == 1, other.stderr[-2000:]
    assert len(other.stderr.splitlines()) == 1
    assert "holds a run on other shards" in other.stderr and "use another --out" in other.stderr
    settings = _bench_cli(built_shards, run, "--methods", "metadata-only", "--seeds", "1", "--tasks", "likes")
    assert settings.returncode == 1 and len(settings.stderr.splitlines()) == 1
    assert "other settings (tasks" in settings.stderr and "another --out" in settings.stderr
    # Neither touched the run: its cells and its leaderboard still describe the first shards.
    assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == files
    assert json.loads((run / RUN_RECORD).read_text())["shards"] == str(built_shards.resolve())

    fresh = tmp_path / "fresh"
    assert bench(other_shards, fresh, ("metadata-only",), seeds=1, progress=False).done
    board = json.loads((fresh / "leaderboard.json").read_text())
    assert board["dataset"]["shards"] == str(other_shards.resolve())


def test_a_cell_of_other_inputs_is_computed_afresh_not_reused(built_shards: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    bench(built_shards, run, ("metadata-only",), seeds=1, progress=False)
    cell = run / "metadata-only" / "seed0"
    good = json.loads((cell / "metrics.json").read_text())
    # As a cell copied in from another run (or left by an older tkds) would look: other fingerprints.
    stale = {**good, "fingerprint": "0" * 64, "rows": {"video": {"metrics": {"likes": {"r2": 0.99}}}}}
    (cell / "metrics.json").write_text(json.dumps(stale))
    (cell / CELL_RECORD).write_text(json.dumps({"fingerprint": "0" * 64}))
    again = bench(built_shards, run, ("metadata-only",), seeds=1, progress=False)
    assert again.done == ["metadata-only/seed0"] and again.reused == []
    assert json.loads((cell / "metrics.json").read_text())["rows"] == good["rows"]
    board = json.loads((run / "leaderboard.json").read_text())
    assert board["rows"][0]["metrics"]["likes"] != {"r2": {"mean": 0.99, "std": 0.0, "n": 1}}
    assert bench(built_shards, run, ("metadata-only",), seeds=1, progress=False).reused == [
        "metadata-only/seed0"
    ]


@pytest.mark.slow
def test_a_checkpoint_of_other_inputs_is_not_resumed(built_shards: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    bench(built_shards, run, ("random",), seeds=1, progress=False)
    cell = run / "random" / "seed0"
    (cell / "metrics.json").unlink()
    (cell / CELL_RECORD).write_text(json.dumps({"fingerprint": "0" * 64}))
    (cell / "checkpoint.pt").write_bytes(b"a checkpoint trained on other shards")
    again = bench(built_shards, run, ("random",), seeds=1, progress=False)
    assert again.failed == {} and again.done == ["random/seed0"]
    assert (cell / "checkpoint.pt").read_bytes() != b"a checkpoint trained on other shards"


@pytest.mark.slow
def test_a_second_bench_into_a_busy_out_is_refused_in_one_line(built_shards: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    with exclusive_folder(run, "--out"):  # this test process is the first bench
        second = _bench_cli(built_shards, run, "--methods", "metadata-only", "--seeds", "1")
    assert second.returncode == 1 and len(second.stderr.splitlines()) == 1
    assert f"--out {run} is in use by another tkds process" in second.stderr
    assert not (run / "leaderboard.json").exists()


def test_a_folder_that_holds_no_bench_run_is_refused(built_shards: Path, tmp_path: Path) -> None:
    run = tmp_path / "notes"
    run.mkdir()
    (run / "thesis.tex").write_text("mine")
    with pytest.raises(TkdsError, match="is not empty and holds no tkds bench run"):
        bench(built_shards, run, ("metadata-only",), seeds=1, progress=False)
    assert sorted(p.name for p in run.iterdir()) == [".tkds.lock", "thesis.tex"]


def test_an_unreadable_run_record_or_a_file_as_out_is_refused_in_one_line(
    built_shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / RUN_RECORD).write_text('["not", "a", "run"]')
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--shards", str(built_shards), "--out", str(run), "--methods", "metadata-only"])
    stderr = capsys.readouterr().err
    assert exit_.value.code == 1 and len(stderr.splitlines()) == 1, stderr[-2000:]
    assert "has an unreadable run.json; choose another --out" in stderr
    assert sorted(p.name for p in run.iterdir()) == [".tkds.lock", RUN_RECORD]
    a_file = tmp_path / "leaderboard.md"  # the CLI's click refuses it; the library says so too
    a_file.write_text("mine")
    with pytest.raises(TkdsError, match=f"cannot use --out {a_file}"):
        bench(built_shards, a_file, ("metadata-only",), seeds=1, progress=False)
    assert a_file.read_text() == "mine"


BAD_OPTIONS = {
    "no seeds": (["--seeds", "0"], "--seeds must be a whole number from 1 to 100, not 0"),
    "negative seeds": (["--seeds", "-3"], "--seeds must be a whole number from 1 to 100"),
    "absurd seeds": (["--seeds", "100000"], "--seeds must be a whole number from 1 to 100"),
    "unknown task": (["--tasks", "likes,vibes"], "unknown task vibes; choose from classification"),
    "no task": (["--tasks", ","], "unknown task"),
    "unknown device": (["--device", "tpu"], "--device tpu: use cpu, cuda or cuda:N"),
    "absent GPU": (["--device", "cuda:9"], "--device cuda:9: "),
    "path as label": (["--label", "../../etc"], "not a label column name"),
    "no method": (["--methods", ","], "--methods names no method; choose from random"),
}


@pytest.mark.parametrize("case", BAD_OPTIONS)
def test_bad_options_are_refused_in_one_line_before_anything_is_written(
    built_shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture, case: str
) -> None:
    options, message = BAD_OPTIONS[case]
    out = tmp_path / "run"
    argv = ["bench", "--shards", str(built_shards), "--out", str(out), "--methods", "metadata-only"]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--seeds", "1", *options])
    stderr = capsys.readouterr().err
    assert exit_.value.code == 1, stderr[-2000:]
    assert stderr.startswith("tkds: error: ") and len(stderr.splitlines()) == 1
    assert message in stderr
    assert not out.exists()
