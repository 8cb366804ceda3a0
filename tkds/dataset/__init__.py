"""The dataset builder and loader: WebDataset shards with leak-free splits."""

from __future__ import annotations

from typing import Any

_LOADER = ("load_shards", "load_eval_clips", "collate")


def __getattr__(name: str) -> Any:
    # Lazy, so the builder and the CLI do not pull in torch and torchcodec.
    if name in _LOADER:
        from tkds.dataset import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'tkds.dataset' has no attribute {name!r}")
