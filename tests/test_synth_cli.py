"""`tkds synth` through the real CLI: determinism, resume after kill -9, and one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TKDS = [sys.executable, "-m", "tkds"]
TINY = ["--videos", "4", "--seconds", "1-2", "--seed", "5"]
PHOTOS = ["--photo-share", "0.5"]  # half photo posts: images and a sound instead of an mp4


def tkds(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*TKDS, *args], capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"tkds {' '.join(args)} failed: {result.stderr}")
    return result


def digest_tree(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_version_and_help_list_only_built_commands() -> None:
    assert tkds("--version").stdout.strip() == "tkds, version 0.1.0"
    help_text = tkds("--help").stdout
    built = ("synth", "twin", "collect", "import", "shard", "bench", "demo", "serve")
    assert all(f"  {name} " in help_text for name in built)


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    tkds("synth", str(tmp_path / "a"), *TINY, *PHOTOS)
    tkds("synth", str(tmp_path / "b"), *TINY, *PHOTOS)
    tkds("synth", str(tmp_path / "c"), *TINY[:-1], "6", *PHOTOS)
    first, second, other = (digest_tree(tmp_path / name) for name in "abc")
    assert first == second
    posts = json.loads((tmp_path / "a" / "corpus.json").read_text())["videos"]
    photos = [post for post in posts if post["kind"] == "photo"]
    assert photos and len(photos) < len(posts)
    media = sum(len(post.get("images", [])) or 1 for post in posts)  # an mp4, or a JPEG per image
    sounds = len({post["sound_id"] for post in photos})
    assert len(first) == media + 4 + sounds + 2  # + an item per post, corpus.json, the config record
    assert first["corpus.json"] != other["corpus.json"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--videos", "0"], "--videos must be at least 1"),
        (["--size", "143x256"], "needs even sides"),
        (["--size", "9000x256"], "is impossible"),
        (["--size", "wide"], "is not WIDTHxHEIGHT"),
        (["--seconds", "7-5"], "is impossible"),
        (["--fps", "0"], "--fps must be"),
        (["--photo-share", "1.5"], "--photo-share must be a fraction 0..1"),
        (["--no-such-flag"], "No such option"),
    ],
)
def test_bad_arguments_fail_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = tkds("synth", str(tmp_path / "out"), *args, check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tkds: error: ") and message in lines[0]
    assert not (tmp_path / "out" / "corpus.json").exists()


def test_unwritable_or_wrong_out_fails_with_one_line(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    for out, message in ((a_file, "is a file"), (Path("/proc/tkds-test/out"), "cannot write to")):
        result = tkds("synth", str(out), *TINY, check=False)
        assert result.returncode == 1 and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_a_complete_corpus_is_not_overwritten(tmp_path: Path) -> None:
    tkds("synth", str(tmp_path / "c"), *TINY)
    result = tkds("synth", str(tmp_path / "c"), *TINY, check=False)
    assert result.returncode == 1 and "already holds a complete SynthTok corpus" in result.stderr


@pytest.mark.slow
def test_kill_9_mid_run_then_rerun_resumes_to_the_same_corpus(tmp_path: Path) -> None:
    args = ["--videos", "16", "--seconds", "1-2", "--seed", "9", "--workers", "2"]
    out = tmp_path / "killed"
    process = subprocess.Popen(
        [*TKDS, "synth", str(out), *args], stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while len(list((out / "media").glob("*.mp4"))) < 4:
        assert process.poll() is None, "synth finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "corpus.json").exists(), "a killed run must not look complete"

    mismatch = tkds("synth", str(out), *args[:-3], "8", "--workers", "2", check=False)
    assert mismatch.returncode == 1 and "partial corpus made with other arguments (seed)" in mismatch.stderr

    resumed = tkds("synth", str(out), *args)
    assert "already there" in resumed.stderr
    tkds("synth", str(tmp_path / "clean"), *args)
    assert digest_tree(out) == digest_tree(tmp_path / "clean"), "resume must add exactly what was missing"


@pytest.mark.slow
def test_ctrl_c_stops_with_one_line_and_leaves_the_corpus_incomplete(tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    process = subprocess.Popen(
        [*TKDS, "synth", str(out), "--videos", "40", "--seconds", "2-3"],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while len(list((out / "media").glob("*.mp4"))) < 2:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1] == "tkds: interrupted; re-run the same command to resume"
    assert not (out / "corpus.json").exists()


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 150 KB tmpfs: room for a few short videos, not for all of them."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=150k", "tmpfs", str(mount_point)])
    if mounted.returncode != 0:
        pytest.skip("mounting a tmpfs needs root; a full disk cannot be simulated here")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_full_disk_names_the_video_and_a_rerun_resumes_once_there_is_room(small_disk: Path) -> None:
    out = small_disk / "corpus"
    args = ["--videos", "6", "--seconds", "2-3", "--seed", "3", "--photo-share", "0"]
    failed = tkds("synth", str(out), *args, check=False)
    assert failed.returncode == 1
    line = failed.stderr.strip().splitlines()[-1]
    assert "No space left on device" in line and "re-run to resume" in line
    assert re.search(r"video \d{19}: ffmpeg failed writing \d{19}\.mp4", line)
    kept = {p.name for p in (out / "media").glob("*.mp4")}
    assert kept and not (out / "corpus.json").exists()

    subprocess.run(["mount", "-o", "remount,size=20m", str(small_disk)], check=True)
    resumed = tkds("synth", str(out), *args)
    assert f"({6 - len(kept)} rendered, {len(kept)} already there)" in resumed.stderr
    assert len(list((out / "media").glob("*.mp4"))) == 6 and (out / "corpus.json").exists()
    assert not list(out.rglob("*.partial"))
