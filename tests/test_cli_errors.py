"""The CLI's last guard: whatever escapes the library is one line, never a traceback."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

import tkds.cli
from tkds.cli import main


def _run(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ValueError("boom"), "tkds: internal error: ValueError; details in "),
        (OSError(28, "No space left on device", "/x/y"), "tkds: error: No space left on device (/x/y)"),
        (RecursionError(), "tkds: error: an input is nested too deeply"),
    ],
)
def test_stray_exceptions_are_one_line(monkeypatch, capsys, tmp_path, error, expected) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read TMPDIR

    def fail(**_: object) -> None:
        raise error

    monkeypatch.setattr(tkds.cli.cli, "main", fail)
    code, err = _run(["synth", "x"], capsys)
    assert code == 1
    assert err.startswith(expected)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    if isinstance(error, ValueError):
        log = Path(re.search(r"details in (\S+);", err).group(1))
        assert log.parent == tmp_path and "ValueError: boom" in log.read_text()
        assert stat.S_IMODE(os.stat(log).st_mode) == 0o600


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["synth", "OUT", "--videos", "2", "--workers", "-1"], "--workers"),
        (["synth", "OUT", "--videos", "2", "--workers", "0"], "--workers"),
        (["twin", "--corpus", "OUT", "--port", "99999"], "--port"),
        (["serve", "--run", "OUT", "--port", "-5"], "--port"),
    ],
)
def test_bad_values_of_other_commands_are_one_line(capsys, tmp_path, argv, named) -> None:
    code, err = _run([str(tmp_path / "out") if part == "OUT" else part for part in argv], capsys)
    assert code in (1, 2) and named in err
    assert len(err.strip().splitlines()) == 1 and "internal error" not in err
    assert not (tmp_path / "out").exists()
