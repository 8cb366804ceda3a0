"""Checkpoints: written atomically, checked against the run's config, and turned back into a method."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from tkds.errors import TkdsError
from tkds.models.methods import Method, build_method
from tkds.models.presets import Preset

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` to `path.partial`, then rename: a killed run never leaves half a checkpoint."""
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def load_checkpoint(path: Path) -> dict:
    """The checkpoint at `path`, on the CPU."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError) as error:
        raise TkdsError(
            f"checkpoint {path} cannot be read ({error}); delete it to train from scratch"
        ) from error


def check_matches(
    checkpoint: dict, path: Path, method: str, preset: Preset, seed: int, total_steps: int
) -> None:
    """Refuse a checkpoint made by another run configuration, naming what differs."""
    differences = [
        f"{what} {theirs} (this run: {ours})"
        for what, theirs, ours in [
            ("method", checkpoint["method"], method),
            (f"preset {checkpoint['preset']['name']} hash", checkpoint["config_hash"], preset.config_hash()),
            ("seed", checkpoint["seed"], seed),
            ("total steps", checkpoint["total_steps"], total_steps),
        ]
        if theirs != ours
    ]
    if differences:
        raise TkdsError(
            f"checkpoint {path} is from another run: {'; '.join(differences)}; "
            "use another output directory, or delete it to start over"
        )


def load_method(path: Path) -> Method:
    """The trained method stored in checkpoint `path`, in eval mode, on the CPU.

    A checkpoint of a plug-in method (or backbone) names it `package.module:Class`, and rebuilding it
    imports that module from sys.path (tkds.plugins): a checkpoint is trusted like code, as torch's docs say
    of pickles. It can only name code that is already importable here, and is read with weights_only=True.
    """
    checkpoint = load_checkpoint(path)
    try:
        preset = Preset(**checkpoint["preset"])
        method = build_method(checkpoint["method"], preset, **checkpoint["method_config"])
    except TkdsError as error:
        raise TkdsError(f"checkpoint {path}: {error}") from None
    method.load_state_dict(checkpoint["model"])
    return method.eval()
