"""Files every stage writes the same way: whole or not at all."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from tkds.errors import TkdsError


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value)}")


def write_json(path: Path, payload: object, indent: int | None = None) -> None:
    """Write `payload` as UTF-8 JSON under `PATH.partial`, then rename it into place.

    numpy scalars are written as plain numbers; a full disk or a permission error is a `TkdsError`.
    """
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_text(
            json.dumps(payload, ensure_ascii=False, indent=indent, default=_plain), encoding="utf-8"
        )
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise TkdsError(
            f"cannot write {path} ({error.strerror}); free space or fix permissions, then re-run to resume"
        ) from error
