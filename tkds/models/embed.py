"""Frozen embeddings of a split: what every benchmark task reads."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tkds.console import progress_bar
from tkds.errors import TkdsError
from tkds.models.checkpoint import load_method
from tkds.models.methods import Method
from tkds.models.train import cpu_threads, default_workers


@dataclass(frozen=True)
class Embeddings:
    """Per-video embeddings of one split; row i of every array belongs to `keys[i]`.

    `video` and `audio` are float32 and L2-normalised: backbone features (no projection head) averaged
    over the evenly spaced clips, then normalised. Videos without audio have an all-zero audio row and
    `has_audio` False. `learns_audio` says whether the method trained its audio encoder.
    """

    keys: list[str]
    video: np.ndarray
    audio: np.ndarray
    has_audio: np.ndarray
    meta: list[dict]
    method: str
    modality: str
    learns_audio: bool
    config_hash: str


def embed(
    checkpoint: Path,
    shards: Path,
    split: str,
    clips: int = 4,
    device: str | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    progress: bool = True,
) -> Embeddings:
    """Embed every video of `split` in `shards` with the method trained into `checkpoint`.

    Clips come from `load_eval_clips` (no augmentation), shaped by the checkpoint's preset.
    `batch_size` counts videos and defaults to the preset's batch over `clips`; `num_workers` defaults
    to every core but one.
    """
    from tkds.dataset.loader import collate, load_eval_clips

    method = load_method(checkpoint)
    preset = method.preset
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dataset = load_eval_clips(
        shards,
        split,
        clips=clips,
        **preset.clip_options(),
    )
    workers = default_workers() if num_workers is None else num_workers
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size or max(1, preset.batch_size // clips),
        collate_fn=collate,
        num_workers=workers,
        pin_memory=dev.type == "cuda",
    )
    with (
        cpu_threads(dev, workers),
        progress_bar(f"embed {split}", dataset.num_samples, enabled=progress) as bar,
    ):
        return embed_batches(
            method, loader, dev, on_batch=lambda n: bar.advance(0, n), source=f"split {split} of {shards}"
        )


@torch.no_grad()
def embed_batches(
    method: Method,
    batches: Iterable[dict],
    device: torch.device | str = "cpu",
    on_batch: Callable[[int], object] | None = None,
    source: str = "the batches",
) -> Embeddings:
    """Embeddings of batches whose `video` is (B, clips, 3, T, H, W) and `audio` (B, clips, 1, M, L).

    `on_batch(n)`, when given, is called with the number of videos after every batch.
    """
    device = torch.device(device)
    method = method.eval().to(device).use_channels_last()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    keys, meta, video, audio, has_audio = [], [], [], [], []
    for batch in batches:
        with autocast:
            v = _clip_mean(method.embed_video, batch["video"].to(device, non_blocking=True))
            a = _clip_mean(method.embed_audio, batch["audio"].to(device, non_blocking=True))
        present = batch["has_audio"].to(device)
        video.append(v.cpu())
        audio.append((a * present[:, None]).cpu())
        has_audio.append(present.cpu())
        keys += batch["key"]
        meta += batch["meta"]
        if on_batch:
            on_batch(len(batch["key"]))
    if not keys:
        raise TkdsError(f"{source} hold no videos to embed; check the split's index")
    return Embeddings(
        keys=keys,
        video=torch.cat(video).numpy(),
        audio=torch.cat(audio).numpy(),
        has_audio=torch.cat(has_audio).numpy(),
        meta=meta,
        method=method.name,
        modality=method.modality,
        learns_audio=method.learns_audio,
        config_hash=method.preset.config_hash(),
    )


def _clip_mean(encode: Callable[[torch.Tensor], torch.Tensor], clips: torch.Tensor) -> torch.Tensor:
    """encode() every clip of (B, C, ...) in one pass, average over C, L2-normalise, as float32."""
    features = encode(clips.flatten(0, 1)).float().unflatten(0, clips.shape[:2])
    return F.normalize(features.mean(dim=1), dim=1)
