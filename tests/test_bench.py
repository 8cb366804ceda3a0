"""`tkds bench` and `tkds demo`: cells, seeds, failures, references and the three leaderboard files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tkds.benchmarks.leaderboard import aggregate_rows
from tkds.benchmarks.run import bench, metadata_table
from tkds.benchmarks.tasks import TASKS

TKDS = [sys.executable, "-m", "tkds"]


def _cell(run: Path, method: str, seed: int, value: float) -> None:
    cell = run / method / f"seed{seed}"
    cell.mkdir(parents=True)
    rows = {"video": {"metrics": {"likes": {"r2_combined": value}}, "skipped": {}}}
    (cell / "metrics.json").write_text(json.dumps({"rows": rows, "modality": "video", "device": "cpu"}))


def test_seeds_aggregate_to_mean_and_sample_std(tmp_path: Path) -> None:
    for seed, value in enumerate([0.5, 0.7, 0.9]):
        _cell(tmp_path, "simclr", seed, value)
    (tmp_path / "random" / "seed0").mkdir(parents=True)
    (tmp_path / "random" / "seed0" / "error.json").write_text(json.dumps({"error": "NaN loss at step 3"}))
    rows = aggregate_rows(tmp_path, ("simclr", "random"), seeds=3)
    simclr = rows[0]["metrics"]["likes"]["r2_combined"]
    assert simclr["mean"] == pytest.approx(0.7) and simclr["n"] == 3
    assert simclr["std"] == pytest.approx(0.2)  # sqrt(((-.2)² + 0 + .2²) / (3 - 1))
    assert rows[1]["seeds"] == 0
    assert rows[1]["failed"] == {0: "NaN loss at step 3", 1: "not run", 2: "not run"}


def test_metadata_table_reads_every_sample(built_shards: Path) -> None:
    table = metadata_table(built_shards, "category")
    assert table.height == 12 and table["key"].n_unique() == 12
    assert table["label"].null_count() == 0 and table["likes"].null_count() == 0
    assert set(table["split"].unique()) <= {"train", "val", "test"}


def test_reference_rows_give_every_task_and_three_leaderboard_files(
    built_shards: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    summary = bench(built_shards, run, ("metadata-only", "sound-id"), seeds=2, progress=False)
    assert sorted(summary.done) == [
        "metadata-only/seed0",
        "metadata-only/seed1",
        "sound-id/seed0",
        "sound-id/seed1",
    ]
    board = json.loads((run / "leaderboard.json").read_text())
    for row in board["rows"][:2]:
        assert set(row["metrics"]) | set(row["skipped"]) == set(TASKS), row["method"]
        assert row["seeds"] == 2
    assert board["rows"][-1]["method"] == "bayes-optimal"
    markdown = (run / "leaderboard.md").read_text()
    assert all(f"## {task}" in markdown for task in TASKS)
    page = (run / "leaderboard.html").read_text()
    assert page.count("data:image/png;base64,") >= 1 and "src='http" not in page
    again = bench(built_shards, run, ("metadata-only", "sound-id"), seeds=2, progress=False)
    assert again.done == [] and len(again.reused) == 4


def test_unknown_method_is_refused_with_the_valid_names(built_shards: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [*TKDS, "bench", "--shards", str(built_shards), "--out", str(tmp_path / "r"), "--methods", "dino"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "unknown method dino; choose from" in result.stderr and "av-simclr" in result.stderr


@pytest.mark.slow
def test_tiny_demo_runs_every_stage_and_writes_the_three_leaderboard_files(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run([*TKDS, "demo", "--out", str(out), "--tiny"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    run = out / "run"
    board = json.loads((run / "leaderboard.json").read_text())
    methods = {row["method"] for row in board["rows"]}
    assert methods == {"random", "simclr", "av-simclr", "metadata-only", "sound-id", "bayes-optimal"}
    for row in board["rows"][:-1]:
        assert row["seeds"] == 2 and not row["failed"], row["method"]
        assert set(row["metrics"]) | set(row["skipped"]) == set(TASKS), row["method"]
        assert all(row["metrics"][task] for task in row["metrics"]), row["method"]
    assert {"audio-visual", "audio", "video"} == {
        r["features"] for r in board["rows"] if r["method"] == "av-simclr"
    }
    page = (run / "leaderboard.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert (run / "leaderboard.md").read_text().count("\n## ") == len(TASKS) + 2  # recipes, floor/ceiling
    assert "Stages: synth" in " ".join(result.stderr.split())
    # The headline figures the demo records have the shape of docs/results/demo.json, which docs/results.md
    # is generated from (tests/test_results_doc.py), and name this run's counts.
    from tests.test_results_doc import recorded_shape_without_run_specific_keys as shape
    from tkds.benchmarks.results_doc import RECORD, read_record

    results = read_record(out / "results.json")
    assert shape(results) == shape(read_record(RECORD))
    assert results["corpus"]["posts"] == 96 and results["plan"]["videos"] == 96
    assert set(results["training_steps"]) == {"simclr", "av-simclr"}
    with duckdb.connect(str(out / "tk.duckdb"), read_only=True) as db:
        assert db.execute("SELECT count(*) FROM media WHERE status = 'ok'").fetchone()[0] == 96
    again = subprocess.run([*TKDS, "demo", "--out", str(out), "--tiny"], capture_output=True, text=True)
    assert again.returncode == 0 and "0 new, 10 reused" in " ".join(again.stderr.split())


def test_a_label_column_nobody_has_skips_the_label_tasks_and_says_so(
    built_shards: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    bench(built_shards, run, ("metadata-only",), seeds=1, label="mood", progress=False)
    row = json.loads((run / "leaderboard.json").read_text())["rows"][0]
    assert set(row["skipped"]) == {"classification", "retrieval"}
    assert "likes" in row["metrics"] and "hashtags" in row["metrics"]
    assert "skipped: 'label' is null in every row" in (run / "leaderboard.md").read_text()


def test_a_failing_method_is_reported_and_the_rest_goes_on(
    synth_db: Path, small_corpus: Path, tmp_path: Path
) -> None:
    """Mute shards of 12 videos: av-simclr fails (too few for a batch), random and sound-id still run, and
    random's audio-visual row is skipped for want of audio."""
    from tkds.collector.media import MediaResult
    from tkds.collector.store import Store
    from tkds.dataset.build import ShardParams, build_shards

    db = tmp_path / "tk.duckdb"
    db.write_bytes(synth_db.read_bytes())
    with Store.open(db) as store:
        for video_id, path in store.db.execute("SELECT video_id, path FROM media").fetchall():
            mute = tmp_path / f"{video_id}.mp4"
            subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-an", "-c", "copy", str(mute)], check=True)
            store.record_media(MediaResult(video_id, "ok", path=str(mute), sha256=video_id, bytes=1))
    shards = tmp_path / "shards"
    labels = str(small_corpus / "corpus.json")
    build_shards(db, shards, ShardParams(size=64, ratios=(0.6, 0.2, 0.2), labels=labels), progress=False)
    run = tmp_path / "run"
    summary = bench(shards, run, ("av-simclr", "random", "sound-id"), seeds=1, progress=False)
    assert list(summary.failed) == ["av-simclr/seed0"] and summary.failed["av-simclr/seed0"]
    assert sorted(summary.done) == ["random/seed0", "sound-id/seed0"]
    rows = {
        (r["method"], r["features"]): r for r in json.loads((run / "leaderboard.json").read_text())["rows"]
    }
    assert rows["av-simclr", "-"]["failed"] == {"0": summary.failed["av-simclr/seed0"]}
    assert rows["random", "video"]["metrics"]["retrieval"]
    assert set(rows["random", "audio-visual"]["skipped"]) == set(TASKS)
    assert "failed: seed 0:" in (run / "leaderboard.md").read_text()


def test_library_warnings_go_to_the_cells_log_not_the_terminal(tmp_path: Path, capfd) -> None:
    import numpy as np
    from sklearn.neighbors import LocalOutlierFactor

    from tkds.benchmarks.run import BenchSummary, _warnings_into

    summary = BenchSummary()
    with _warnings_into(tmp_path / "cell" / "warnings.log", summary):
        points = np.zeros((40, 3))
        points[:5] += np.arange(5)[:, None]
        LocalOutlierFactor(n_neighbors=5).fit(points)  # mostly duplicates: scikit-learn warns
    assert summary.warnings >= 1
    assert "UserWarning: Duplicate values" in (tmp_path / "cell" / "warnings.log").read_text()
    assert "Duplicate values" not in capfd.readouterr().err
