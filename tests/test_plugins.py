"""Plug-in methods, encoders and tasks (tkds.plugins): the examples/ files scored by `tkds bench` by their
`module:Attr` names and through a real entry point, and every bad name refused in one line.

The examples are copied into a package `examples_pkg` in a temporary folder, beside a dist-info whose
entry_points.txt declares them, as `pip install` would leave them; that folder goes on PYTHONPATH (the
CLI's subprocess) or sys.path (in-process), never into the repository.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tkds.benchmarks.tasks import TASK_REGISTRY, run_tasks
from tkds.cli import main
from tkds.errors import TkdsError
from tkds.models.checkpoint import load_method, save_checkpoint
from tkds.models.encoders import audio_encoder
from tkds.models.methods import METHOD_REGISTRY, build_method, method_class
from tkds.plugins import is_plugin_name

from .test_bench_tasks import make_table
from .test_models_methods import TINY, one_thread, tiny_batch  # noqa: F401 (an autouse fixture)
from .test_train_embed_cli import TINY_CLI

REPO = Path(__file__).resolve().parents[1]
METHOD = "examples_pkg.my_method:SimSiam"
TASK = "examples_pkg.my_task:NearestLabel"
ENCODER = "examples_pkg.my_encoder:FrameNet"
ENTRY_POINTS = """\
[tkds.methods]
simsiam = examples_pkg.my_method:SimSiam
broken = examples_pkg.gone:Method
simclr = examples_pkg.my_method:SimSiam

[tkds.encoders]
frame-net = examples_pkg.my_encoder:FrameNet

[tkds.tasks]
nearest-label = examples_pkg.my_task
"""
# Plug-ins that break the protocol, each in its own way.
BAD = """\
import torch

class NotAMethod:
    name = "not-a-method"

INSTANCE = torch.nn.Linear(2, 2)

def no_dim():
    return torch.nn.Linear(2, 2)

class HalfATask:  # no run()
    NAME = "half"
    NEEDS = ("label",)

    @staticmethod
    def skip_reason(table):
        return None
"""


@pytest.fixture(scope="module")
def plugins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder holding examples_pkg and its dist-info, on sys.path for this module's tests."""
    root = tmp_path_factory.mktemp("plugins")
    package = root / "examples_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for example in ("my_method.py", "my_encoder.py", "my_task.py"):
        shutil.copy(REPO / "examples" / example, package / example)
    (package / "bad.py").write_text(BAD)
    info = root / "tkds_examples-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tkds-examples\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))
    for name in [name for name in sys.modules if name.split(".")[0] == "examples_pkg"]:
        del sys.modules[name]


def tkds(plugins: Path, *args: str | Path) -> subprocess.CompletedProcess:
    """The CLI in a subprocess with the plug-ins on PYTHONPATH and the `test-tiny` preset registered."""
    return subprocess.run(
        [sys.executable, "-c", TINY_CLI, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(plugins)},
    )


@pytest.fixture(scope="module")
def bench_run(plugins: Path, built_shards: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """random, the example method by its module:Class name and again by its entry point, scored on two
    built-in tasks and the example task by module:Attr and by entry point."""
    out = tmp_path_factory.mktemp("bench") / "run"
    methods = f"random,{METHOD},simsiam"
    tasks = f"classification,likes,{TASK},nearest-label"
    result = tkds(plugins, "bench", "--shards", built_shards, "--out", out, "--methods", methods,
                  "--tasks", tasks, "--preset", "test-tiny", "--seeds", "1", "--device", "cpu")  # fmt: skip
    board = json.loads((out / "leaderboard.json").read_text()) if result.returncode == 0 else {}
    rows = {(row["method"], row["features"]): row for row in board.get("rows", [])}
    return {"out": out, "result": result, "rows": rows}


@pytest.mark.slow
def test_the_example_method_is_trained_scored_and_ranked_by_its_module_name(bench_run: dict) -> None:
    result, out, rows = bench_run["result"], bench_run["out"], bench_run["rows"]
    assert result.returncode == 0, result.stderr[-3000:]
    for method in (METHOD, "simsiam"):
        row = rows[method, "video"]
        assert not row["failed"] and row["seeds"] == 1 and row["config_hash"] != "-"
        assert set(row["metrics"]) | set(row["skipped"]) == {"classification", "likes", TASK, "nearest-label"}
        assert row["metrics"]["classification"]["linear_top1"]["mean"] is not None
        cell = out / method / "seed0"
        losses = [json.loads(line)["loss"] for line in (cell / "train.jsonl").read_text().splitlines()]
        assert len(losses) >= 3 and all(-1.0 <= loss <= 1.0 for loss in losses)  # SimSiam: a mean −cos
    assert ("random", "audio-visual") in rows and (METHOD, "audio") not in rows  # a video method
    markdown = (out / "leaderboard.md").read_text()
    assert f"{METHOD} (video)" in markdown and "simsiam (video)" in markdown
    assert f"\n## {TASK}\n" in markdown and "\n## nearest-label\n" in markdown
    assert METHOD in (out / "leaderboard.html").read_text()


@pytest.mark.slow
def test_the_plugin_task_scores_what_its_definition_says(bench_run: dict, plugins: Path) -> None:
    """The bench's number for the example task is its run() on the cell's own embeddings, under both names."""
    rows, out = bench_run["rows"], bench_run["out"]
    assert bench_run["result"].returncode == 0, bench_run["result"].stderr[-3000:]
    import polars as pl
    from examples_pkg import my_task

    table = pl.read_parquet(out / METHOD / "seed0" / "embeddings.parquet")
    expected = my_task.run(table, "video", 0)["nn_top1"]
    for task in (TASK, "nearest-label"):
        assert rows[METHOD, "video"]["metrics"][task]["nn_top1"]["mean"] == pytest.approx(expected)


@pytest.mark.slow
def test_a_plugin_checkpoint_is_rebuilt_by_load_method_and_embedded(
    bench_run: dict, plugins: Path, built_shards: Path, tmp_path: Path
) -> None:
    assert bench_run["result"].returncode == 0, bench_run["result"].stderr[-3000:]
    checkpoint = bench_run["out"] / METHOD / "seed0" / "checkpoint.pt"
    method = load_method(checkpoint)
    assert type(method).__module__ == "examples_pkg.my_method" and type(method).__name__ == "SimSiam"
    emb = tmp_path / "emb.parquet"
    result = tkds(plugins, "embed", "--checkpoint", checkpoint, "--shards", built_shards, "--split", "test",
                  "--out", emb, "--clips", "1", "--device", "cpu")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert emb.is_file()


def test_a_checkpoint_naming_code_that_is_not_there_or_misspelled_is_refused(
    plugins: Path, tmp_path: Path
) -> None:
    """A checkpoint can only name importable code, and a name that is not strictly spelled imports nothing."""
    model = build_method(METHOD, TINY)
    state = {"method": METHOD, "preset": TINY.to_dict(), "method_config": {}, "model": model.state_dict()}
    save_checkpoint(tmp_path / "good.pt", state)
    assert type(load_method(tmp_path / "good.pt")).__name__ == "SimSiam"
    for name, message in [
        ("gone.module:Method", "no module gone on the Python path"),
        ("../examples_pkg.my_method:SimSiam", "is neither a known name nor a plug-in spelled like"),
        ("examples_pkg.bad:NotAMethod", "NotAMethod is not a subclass of tkds.models.methods.Method"),
        ("this:Method", "this is in Python's standard library"),  # importing it prints the Zen of Python
    ]:
        save_checkpoint(tmp_path / "bad.pt", {**state, "method": name})
        with pytest.raises(TkdsError, match=f"checkpoint {tmp_path / 'bad.pt'}: method .*{message}"):
            load_method(tmp_path / "bad.pt")
    assert "this" not in sys.modules and "examples_pkg.my_method" in sys.modules


def test_a_plugin_encoder_named_in_a_preset_trains_and_comes_back_from_a_checkpoint(
    plugins: Path, tmp_path: Path
) -> None:
    from examples_pkg.my_encoder import FrameNet

    for backbone in (ENCODER, "frame-net"):  # by module:Class, and by its entry point
        preset = dataclasses.replace(TINY, video_backbone=backbone)
        method = build_method("simclr", preset)
        assert isinstance(method.video_encoder, FrameNet)
        loss, _ = method.training_step(tiny_batch())
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.video_encoder.parameters())
        assert method.embed_video(torch.randn(3, 3, 4, 32, 32)).shape == (3, FrameNet.dim)
        state = {
            "method": "simclr",
            "preset": preset.to_dict(),
            "method_config": {},
            "model": method.state_dict(),
        }
        save_checkpoint(tmp_path / "checkpoint.pt", state)
        again = load_method(tmp_path / "checkpoint.pt")
        assert isinstance(again.video_encoder, FrameNet)
        assert torch.equal(again.video_encoder.frames[0].weight, method.video_encoder.frames[0].weight)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("examples_pkg.bad:INSTANCE", "INSTANCE is a module instance; name its class"),
        ("examples_pkg.bad:no_dim", "gives Linear, not an nn.Module with a whole-number attribute dim"),
        ("examples_pkg.bad:NotAMethod", "NotAMethod is a class that is not a torch.nn.Module"),
        ("examples_pkg/bad:no_dim", "is neither a known name nor a plug-in"),
        ("vit-huge", "unknown audio backbone 'vit-huge'; use one of: cnn2d-tiny"),
    ],
)
def test_a_bad_plugin_encoder_is_one_line(plugins: Path, name: str, message: str) -> None:
    with pytest.raises(TkdsError, match=message) as error:
        audio_encoder(name)
    assert "\n" not in str(error.value)


def test_a_plugin_task_by_module_attr_and_by_entry_point_runs_beside_the_builtins(plugins: Path) -> None:
    import examples_pkg.my_task as module

    assert (
        TASK_REGISTRY.resolve("nearest-label") is module
        and TASK_REGISTRY.resolve(TASK) is module.NearestLabel
    )
    table = make_table()
    results = run_tasks(table, ["classification", TASK, "nearest-label"], "video", 0)
    assert set(results.metrics) == {"classification", TASK, "nearest-label"}
    # Planted, separable classes: the nearest train video shares the label almost always.
    assert results.metrics[TASK] == results.metrics["nearest-label"]
    assert results.metrics[TASK]["nn_top1"] > 0.9
    assert run_tasks(make_table(separable=False), [TASK]).metrics[TASK]["nn_top1"] < 0.5
    with pytest.raises(TkdsError, match="HalfATask is not a task: it needs NAME"):
        run_tasks(table, ["examples_pkg.bad:HalfATask"])


def test_entry_points_are_listed_after_the_builtins_and_never_shadow_them(plugins: Path) -> None:
    assert METHOD_REGISTRY.names()[:6] == ["random", "simclr", "av-simclr", "moco", "vicreg", "supervised"]
    assert "simsiam" in METHOD_REGISTRY.names() and "nearest-label" in TASK_REGISTRY.names()
    assert method_class("simsiam") is method_class(METHOD)
    assert method_class("simclr").__name__ == "SimCLR" and METHOD_REGISTRY.names().count("simclr") == 1
    with pytest.raises(TkdsError, match=r"'simsiam2'; use one of: random, .*, simsiam, broken, or a"):
        method_class("simsiam2")
    with pytest.raises(TkdsError, match=r"broken = 'examples_pkg.gone:Method' cannot be loaded"):
        method_class("broken")


def test_tkds_train_refuses_a_bad_plugin_in_one_line(
    plugins: Path, built_shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--shards", str(built_shards), "--out", str(tmp_path / "run"), "--method", "../x:Y"])
    stderr = capsys.readouterr().err
    assert exit_.value.code == 1 and len(stderr.splitlines()) == 1, stderr
    assert "method '../x:Y' is neither a known name nor a plug-in" in stderr
    assert not (tmp_path / "run").exists()


def test_the_strict_spelling_admits_no_path() -> None:
    good = ["a:B", "pkg.mod:Cls", "_p.m2:_X", "a.b.c.d:e"]
    bad = ["../x:Y", "x/y:Z", "a..b:C", ".a:B", "a:B:C", "a:", ":B", "a.b", "a:B.c", "a b:C", "a:b\n",
           "é:B", "a-b:C", "1a:B", "a:" + "B" * 65, 7, None, "x\\y:Z"]  # fmt: skip
    assert all(is_plugin_name(name) for name in good)
    assert not any(is_plugin_name(name) for name in bad)


BAD_CLI = {
    "bad spelling": ("examples_pkg my_method:SimSiam", "is neither a known name nor a plug-in spelled like"),
    "a path": ("../x:Y", "method '../x:Y' is neither a known name nor a plug-in"),
    "missing module": ("examples_pkg.nothere:SimSiam", "no module examples_pkg.nothere on the Python path"),
    "missing attribute": ("examples_pkg.my_method:SimSam", "examples_pkg.my_method has no attribute SimSam"),
    "not a Method": ("examples_pkg.bad:NotAMethod", "NotAMethod is not a subclass of tkds.models.methods"),
    "not a task": ("examples_pkg.bad:HalfATask", "task examples_pkg.bad:HalfATask: HalfATask is not a task"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_CLI)
def test_bad_plugins_are_refused_by_the_cli_in_one_line_before_anything_is_written(
    plugins: Path, built_shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture, case: str
) -> None:
    name, message = BAD_CLI[case]
    option = "--tasks" if "task" in case else "--methods"
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--shards", str(built_shards), "--out", str(out), "--seeds", "1", option, name])
    stderr = capsys.readouterr().err
    assert exit_.value.code == 1, stderr[-2000:]
    assert stderr.startswith("tkds: error: ") and len(stderr.splitlines()) == 1, stderr
    assert message in stderr
    assert not out.exists()


def test_the_docs_show_the_example_method_that_is_tested_here() -> None:
    page = (REPO / "docs" / "plugins.md").read_text()
    assert (REPO / "examples" / "my_method.py").read_text().rstrip() in page
    assert len((REPO / "examples" / "my_method.py").read_text().splitlines()) <= 40
