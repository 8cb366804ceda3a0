"""benchmarks/gpu.py --cpu: every section of the GPU run, on cpu-tiny and the small test shards."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu.py"

_spec = importlib.util.spec_from_file_location("benchmarks_gpu", SCRIPT)
gpu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu)


def numbers(entry: dict) -> list[float]:
    return [v for v in entry.values() if isinstance(v, int | float) and not isinstance(v, bool)]


def run_gpu_script(out: Path, shards: Path, *options: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), str(out), "--cpu", "--shards", str(shards), *options]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def check_entries(report: dict) -> None:
    """Every measurement is there, each with finite figures or a one-line failure listed as such."""
    assert list(report["entries"]) == gpu.entry_names(os.cpu_count() or 1)
    for name, entry in report["entries"].items():
        if "error" in entry:
            assert entry["error"] and "\n" not in entry["error"], name
            assert f"{name}: {entry['error']}" in report["failures"]
        elif name == "tasks":
            assert set(entry["rows"]) == {"video", "audio", "audio-visual"}
        else:
            assert numbers(entry) and all(math.isfinite(v) for v in numbers(entry)), name


@pytest.mark.slow
def test_cpu_run_reports_every_section(built_shards: Path, tmp_path: Path) -> None:
    result = run_gpu_script(tmp_path, built_shards, "--budget-s", "240")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    check_entries(report)
    entries = report["entries"]
    # On an idle machine each section fits its share many times over: every code path ran to the end.
    assert report["failures"] == [], report["failures"]
    assert entries["train_shards"]["steps"] == 5 and entries["train_shards"]["workers"] >= 1
    assert entries["train_shards"]["ratio_to_synthetic"] > 0
    assert entries["embed"]["method"] == "av-simclr" and entries["embed"]["videos"]["test"] > 0
    assert entries["tasks"]["rows"]["video"]["metrics"]
    markdown = (tmp_path / "gpu.md").read_text()
    assert all(f"| {name}" in markdown for name in entries)


@pytest.mark.slow
def test_sections_past_their_budget_are_stopped_and_the_run_goes_on(
    built_shards: Path, tmp_path: Path
) -> None:
    # Far more synthetic steps than fit: that section is killed at its share, the first one's share is
    # too short to start, the later ones still run, and the run ends inside its budget. (Training from
    # shards stops at cpu-tiny's 5 epochs of the small split, well before 100000 steps.)
    result = run_gpu_script(tmp_path, built_shards, "--budget-s", "25", "--steps", "100000")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    check_entries(report)
    entries = report["entries"]
    assert entries["synthetic_eager"]["error"].startswith("skipped: "), entries["synthetic_eager"]
    assert "stopped at its time budget" in entries["synthetic_compiled"]["error"]
    assert "ratio_to_synthetic" not in entries["train_shards"]  # its synthetic ceiling was not measured
    assert report["wall_s"] <= 25


def test_missing_shards_is_one_line(tmp_path: Path) -> None:
    command = [sys.executable, str(SCRIPT), str(tmp_path / "out"), "--cpu", "--shards", str(tmp_path)]
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "scripts/gpu-carry.sh" in result.stderr


def test_repeated_train_split_fills_every_worker(built_shards: Path, tmp_path: Path) -> None:
    import tkds

    unique = tkds.load_shards(built_shards, "train").num_samples
    repeated = gpu.repeated_shards(built_shards, tmp_path / "repeated", 2 * unique + 1)
    assert tkds.load_shards(repeated, "train").num_samples == 3 * unique
    keys = [sample["key"] for sample in tkds.load_shards(repeated, "train", frames=2, size=32)]
    assert len(keys) == 3 * unique and len(set(keys)) == unique
