"""tkds: TikTok as a research-grade video dataset and self-supervised benchmark."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LOADER = ("load_shards", "load_eval_clips", "collate")


def __getattr__(name: str) -> Any:
    # Lazy, so `import tkds` does not pull in torch and torchcodec.
    if name in _LOADER:
        from tkds.dataset import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'tkds' has no attribute {name!r}")
