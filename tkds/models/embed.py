"""Frozen embeddings of a split: what every benchmark task reads."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tkds.console import progress_bar
from tkds.dataset.split import SPLITS
from tkds.errors import TkdsError
from tkds.files import atomic_path
from tkds.ids import preview
from tkds.models.checkpoint import load_method
from tkds.models.methods import Method
from tkds.models.train import check_device, check_workers, cpu_threads, default_workers

MAX_CLIPS = 64


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

    check_embed_options(split, clips, device, batch_size, num_workers)
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


def check_embed_options(
    split: object,
    clips: object,
    device: object = None,
    batch_size: object = None,
    num_workers: object = None,
) -> None:
    """Refuse an unknown split, a clip count outside 1..64, a bad device, batch size or worker count."""
    if not isinstance(split, str) or split not in SPLITS:
        raise TkdsError(f"--split {preview(split)}: use one of {', '.join(SPLITS)}")
    if isinstance(clips, bool) or not isinstance(clips, int) or not 1 <= clips <= MAX_CLIPS:
        raise TkdsError(f"--clips {preview(clips)}: use a whole number from 1 to {MAX_CLIPS}")
    if device is not None:
        check_device(device)
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise TkdsError(f"batch_size {preview(batch_size)}: use a whole number of videos, 1 or more")
    check_workers(num_workers)


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


@dataclass(frozen=True)
class EmbedSummary:
    """What `write_embeddings` wrote: one row per video, its embeddings' widths (audio: 0 if none)."""

    out: Path
    method: str
    rows: int
    video_dim: int
    audio_dim: int
    wall_s: float


def write_embeddings(
    checkpoint: Path,
    shards: Path,
    split: str,
    out: Path,
    clips: int = 4,
    device: str | None = None,
    progress: bool = True,
) -> EmbedSummary:
    """Embed `split` with `checkpoint` into the parquet `out`, in the table `tkds bench` writes per cell.

    One row per video: `key` (the video id), its metadata, `video` and, for audio-visual methods,
    `audio` (null for videos without audio). An existing `out` is refused; the file appears whole or not
    at all (written beside it, then renamed).
    """
    from tkds.benchmarks.run import checked_manifest, embeddings_table

    started = time.perf_counter()
    check_embed_options(split, clips, device)
    checkpoint, shards, out = Path(checkpoint), Path(shards), Path(out)
    if not checkpoint.is_file():
        raise TkdsError(f"--checkpoint {checkpoint} is not a file; train one with tkds train")
    if out.exists():
        raise TkdsError(f"--out {out} exists; choose another --out, or delete it to embed again")
    if not out.parent.is_dir():
        raise TkdsError(f"--out {out}: folder {out.parent} does not exist; create it first")
    label_column = checked_manifest(shards).get("label_column", "category")
    embeddings = embed(checkpoint, shards, split, clips=clips, device=device, progress=progress)
    table = embeddings_table([embeddings], label_column)
    if embeddings.modality != "audio-visual":
        table = table.drop("audio")  # a visual method's audio encoder is untrained
    with atomic_path(out) as partial:
        table.write_parquet(partial)
    return EmbedSummary(
        out=out,
        method=embeddings.method,
        rows=table.height,
        video_dim=embeddings.video.shape[1],
        audio_dim=embeddings.audio.shape[1] if "audio" in table.columns else 0,
        wall_s=time.perf_counter() - started,
    )
