"""The README's code blocks, run as a user would: each saved verbatim to a file and run from a folder
outside the clone, with the venv's `tkds` first on PATH (the README's `source .venv/bin/activate`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tkds.collector.importer import import_captures
from tkds.dataset.build import ShardParams, build_shards

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)

# Blocks a test cannot run as written, by their first line, each with the reason. Every other block runs.
NOT_RUN = {
    "make demo    # set up (system packages, .venv), then run the embedded default end to end": (
        "make test runs this suite itself, and make demo is `tkds demo --out demo` after setup"
    ),
    "tiktok.com | TikTok twin | saved captures": "a diagram, not code",
    "pip install -c constraints.txt -e '.[train]'    # the tested versions, exactly": (
        "installs into the environment running this test; every fresh clone's setup (CI) runs it"
    ),
    "tkds twin --corpus out/synthtok --port 8080 --ca-out twin-ca.pem --faults 'rate429=0.05,empty=0.02'": (
        "the twin serves until Ctrl-C, and ID stands for an id the reader picks (tests/test_twin_*.py)"
    ),
    "tkds collect --db tk.duckdb --media media/ --hashtag dance --limit 200            # tiktok.com": (
        "its first line needs tiktok.com, its second a running twin (tests/test_collect*.py)"
    ),
    "tkds import --db tk.duckdb saved/*.json saved/*.html": (
        "the reader's own exports (saved/, scraper_export.json …) (tests/test_import*.py)"
    ),
    "tkds shard --db tk.duckdb --out shards/ --split-by author --ratios 0.8,0.1,0.1 --size 256 --fps 15": (
        "needs a collected tk.duckdb and the reader's saved/ pages (tests/test_shard*.py)"
    ),
    "tkds bench --shards shards/ --out run/ --methods random,simclr,av-simclr,metadata-only,sound-id \\": (
        "needs the shards of the block above (tests/test_bench.py)"
    ),
    "PYTHONPATH=examples tkds bench --shards shards/ --out run/ \\": (
        "needs shards and the clone's examples/ (tests/test_plugins.py runs the example method and task)"
    ),
    "tkds serve --run demo/run --port 8000        # then open http://127.0.0.1:8000/": (
        "serves until Ctrl-C (tests/test_serve*.py)"
    ),
    "pip install -e '.[ray]'       # Ray core; make test installs it too": (
        "starts Ray nodes, needs folders every node mounts (tests/test_engine_ray.py: a 2-node cluster)"
    ),
    "tkds demo --out demo": (
        "the full demo (300 videos) runs for a quarter of an hour; the test stands in a demo/ of 80"
    ),
}


def readme_blocks() -> list[tuple[str, str]]:
    """(language, code) of each fenced block of README.md, in order."""
    return FENCE.findall((REPO / "README.md").read_text())


def first_line(code: str) -> str:
    return code.splitlines()[0]


def user_env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}


def run_script(folder: Path, name: str, language: str, code: str) -> subprocess.CompletedProcess[str]:
    script = folder / name
    script.write_text(code)
    runner = [str(VENV_BIN / "python")] if language == "python" else ["bash", "-euo", "pipefail"]
    return subprocess.run(
        [*runner, str(script)], cwd=folder, env=user_env(), capture_output=True, text=True, timeout=1800
    )


def test_every_block_is_run_or_listed_with_a_reason() -> None:
    firsts = [first_line(code) for _, code in readme_blocks()]
    assert set(NOT_RUN) <= set(firsts), (
        f"NOT_RUN lists blocks the README no longer has: {set(NOT_RUN) - set(firsts)}"
    )
    assert any(language == "python" for language, _ in readme_blocks())


def test_a_script_without_a_main_guard_can_call_generate(tmp_path: Path) -> None:
    # Spawned workers that re-ran this script would print the marker again, and start their own pools
    # during bootstrap (BrokenProcessPool).
    code = (
        "from tkds.synth import generate\n"
        "print('script body ran')\n"
        "summary = generate('corpus', 4, size=(32, 64), seconds=(1, 1), workers=2, progress=False)\n"
        "print('videos', summary.videos)\n"
    )
    result = run_script(tmp_path, "unguarded.py", "python", code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("script body ran") == 1 and "videos 4" in result.stdout
    assert len(list((tmp_path / "corpus" / "media").glob("*.mp4"))) == 4


@pytest.fixture(scope="module")
def reader_folder(twin_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reader's folder outside the clone, holding what `tkds demo` leaves for the later blocks
    (demo/tk.duckdb, demo/shards), built from 80 one-second videos instead of the demo's 300."""
    folder = tmp_path_factory.mktemp("reader")
    assert not folder.is_relative_to(REPO)
    db = folder / "demo" / "tk.duckdb"
    db.parent.mkdir()
    import_captures(db, sorted((twin_corpus / "items").glob("*.json")), twin_corpus / "media", False)
    params = ShardParams(labels=str(twin_corpus / "corpus.json"), ratios=(0.8, 0.1, 0.1))
    build_shards(db, folder / "demo" / "shards", params, progress=False)
    return folder


@pytest.mark.slow
def test_the_readme_blocks_run_verbatim_as_scripts(reader_folder: Path) -> None:
    ran = []
    for number, (language, code) in enumerate(readme_blocks()):
        if first_line(code) in NOT_RUN:
            continue
        if language == "sql":
            with duckdb.connect(str(reader_folder / "demo" / "tk.duckdb"), read_only=True) as db:
                rows = db.execute(code).fetchall()
            assert rows, f"README block {number} returned no rows"
        else:
            assert language in ("bash", "python"), f"README block {number} is {language!r}; run it here"
            suffix = "py" if language == "python" else "sh"
            result = run_script(reader_folder, f"block{number}.{suffix}", language, code)
            assert result.returncode == 0, f"README block {number}:\n{code}\n{result.stderr[-3000:]}"
        ran.append(language)
    assert sorted(set(ran)) == ["bash", "python", "sql"]
