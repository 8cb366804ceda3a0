"""Files every stage writes the same way: whole or not at all."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from tkds.errors import TkdsError


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value)}")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A path to write `path` through: `PATH.partial`, renamed into place when the block ends, removed
    when it fails; a full disk or a permission error is a `TkdsError`."""
    partial = path.with_name(path.name + ".partial")
    try:
        yield partial
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise TkdsError(
            f"cannot write {path} ({error.strerror}); free space or fix permissions, then re-run to resume"
        ) from error
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_text(path: Path) -> Iterator:
    """A UTF-8 text file to write `path` through, as `atomic_path` writes it."""
    with atomic_path(path) as partial, open(partial, "w", encoding="utf-8") as file:
        yield file


def write_json(path: Path, payload: object, indent: int | None = None) -> None:
    """Write `payload` as UTF-8 JSON under `PATH.partial`, then rename it into place.

    numpy scalars are written as plain numbers; a full disk or a permission error is a `TkdsError`.
    """
    text = json.dumps(payload, ensure_ascii=False, indent=indent, default=_plain)
    with atomic_text(path) as file:
        file.write(text)


LOCK_NAME = ".tkds.lock"


def _hold(handle, mode: int, busy: str) -> None:
    try:
        fcntl.flock(handle, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise TkdsError(busy) from None


@contextmanager
def exclusive_folder(folder: Path, what: str) -> Iterator[Path]:
    """Hold an exclusive lock on `folder` (created if missing) for as long as the block runs.

    The lock is `flock` on `FOLDER/.tkds.lock`, so the kernel drops it when the process dies (kill -9
    included) and a re-run never finds a stale lock. A second process is refused in one line; `what`
    names the folder in that line, e.g. "--out".
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK_NAME, "a+")  # noqa: SIM115 - held until the block ends
    except OSError as error:
        raise TkdsError(
            f"cannot use {what} {folder} ({error.strerror}); fix its permissions or choose another"
        ) from None
    _hold(
        handle,
        fcntl.LOCK_EX,
        f"{what} {folder} is in use by another tkds process; wait for it to finish, or choose another",
    )
    with handle:  # closing releases the lock
        yield folder


@contextmanager
def shared_folder(folder: Path, busy: str) -> Iterator[Path]:
    """A shared lock on `folder` while the block reads it: refused with `busy` while a process holds it
    exclusively. A folder without a lock file (a read-only copy, say) is read as it is."""
    try:
        handle = open(folder / LOCK_NAME, "rb")  # noqa: SIM115 - held until the block ends
    except OSError:
        handle = None
    if handle is None:
        yield folder
        return
    _hold(handle, fcntl.LOCK_SH, busy)
    with handle:
        yield folder


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks (memory does not grow with the file)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
