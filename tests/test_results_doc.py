"""docs/results.md's demo section is the recorded run's: generated from docs/results/demo.json, whose
figures it shows, and that file has the shape a fresh `tkds demo` writes (checked in test_bench's demo)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tkds.benchmarks.results_doc import (
    END,
    MARKDOWN,
    RECORD,
    current_section,
    demo_section,
    read_record,
    record_run,
)
from tkds.errors import TkdsError

# A headline number's bootstrap interval (from the cells' per-video outputs): optional, since the recorded
# run predates the outputs; a demo recorded again carries it, and the page shows it.
INTERVAL_KEYS = ("ci", "ci_videos", "ci_seeds")


def shape(value: object) -> object:
    """The keys of a JSON value, nested, with every leaf the same: what two results files must share."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items() if key not in INTERVAL_KEYS}
    if isinstance(value, list):
        return [shape(value[0])] if value and isinstance(value[0], dict) else "list"
    return "value"


def recorded_shape_without_run_specific_keys(record: dict) -> object:
    """The shape, less the keys whose names depend on what ran (methods trained, stages timed)."""
    return {key: item for key, item in shape(record).items() if key not in ("training_steps", "stage_s")}


def test_the_documented_section_is_generated_from_the_recorded_run() -> None:
    record = read_record(RECORD)
    assert current_section(MARKDOWN.read_text()) == demo_section(record)


def test_the_markdown_table_shows_the_recorded_figures() -> None:
    """Read the table back from docs/results.md and compare it with the JSON, number by number."""
    record = read_record(RECORD)
    section = current_section(MARKDOWN.read_text())
    table = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    assert re.fullmatch(r"\|---\|(---:\|)+", table[1]), "the separator row, or the table does not render"
    body = {
        cells[0]: cells[1:]
        for cells in ([c.strip() for c in line.strip("|").split("|")] for line in table[2:])
    }
    assert list(body) == [row["row"] for row in record["rows"]]
    for row in record["rows"]:
        for column, text in zip(header[1:], body[row["row"]], strict=True):
            value = row["headline"][column]
            if value is None or value["mean"] is None:
                assert text == "–"
                continue
            numbers = [float(n) for n in re.findall(r"-?\d+\.\d+", text)]
            assert numbers[0] == pytest.approx(value["mean"], abs=5e-4), (row["row"], column)
            if value["n"] > 1:
                assert numbers[1] == pytest.approx(value["std"], abs=5e-4), (row["row"], column)


def test_the_documented_steps_and_counts_are_the_runs() -> None:
    """The prose figures of the section (posts, samples, shards, training steps) come from the record."""
    from tkds.models.presets import get_preset

    record = read_record(RECORD)
    section = " ".join(current_section(MARKDOWN.read_text()).split())
    preset = get_preset(record["plan"]["preset"])
    samples, shards = record["samples"], record["shards"]
    assert f"{samples['train']}/{samples['val']}/{samples['test']} train/val/test samples" in section
    assert f"{shards['train']}/{shards['val']}/{shards['test']} shards" in section
    assert record["training_steps"], "the recorded run trained nothing"
    for method, steps in record["training_steps"].items():
        assert steps == preset.epochs * (samples["train"] // preset.batch_size), method
        assert f"{method} {steps}" in section


def test_the_hand_written_reading_quotes_only_recorded_figures() -> None:
    """Every three-decimal figure in the prose after the table (up to the next section) is a cell of it."""
    markdown = MARKDOWN.read_text()
    section = current_section(markdown)
    reading = markdown[markdown.index(END) + len(END) :].split("\n## ")[0]
    table = set(re.findall(r"-?\d\.\d{3}", section))
    quoted = re.findall(r"-?\d\.\d{3}", reading)
    assert quoted, "the reading quotes no figure; this test would guard nothing"
    assert not [figure for figure in quoted if figure not in table]


def test_recording_a_run_rewrites_only_the_section(tmp_path: Path) -> None:
    record = read_record(RECORD)
    record["date"] = "2099-01-01"
    results = tmp_path / "results.json"
    results.write_text(json.dumps(record))
    markdown = tmp_path / "results.md"
    markdown.write_text(f"# Results\nbefore\n{demo_section(read_record(RECORD))}\nafter\n")
    record_run(results, tmp_path / "results" / "demo.json", markdown)
    text = markdown.read_text()
    assert text.startswith("# Results\nbefore\n") and text.endswith("\nafter\n")
    assert "recorded on 2099-01-01" in text
    assert json.loads((tmp_path / "results" / "demo.json").read_text())["date"] == "2099-01-01"
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(TkdsError, match="not a tkds demo results file"):
        record_run(tmp_path / "bad.json", tmp_path / "x.json", markdown)
