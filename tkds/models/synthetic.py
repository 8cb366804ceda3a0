"""Synthetic clips in the loader's format, held in memory: for tests and the training benchmark.

Each sample is a function of (seed, index) for its content and of (seed, epoch, index) for its
"augmentation", so epochs replay exactly, as `load_shards` does after `set_epoch`. Content depends on a
class label (a colour and a tone per class), so a method can learn something from it.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import IterableDataset, get_worker_info

from tkds.models.presets import Preset

HOP = 160  # the loader's log-mel hop, in audio samples


def stack_samples(samples: list[dict]) -> dict:
    """Collate samples into a batch: tensors stacked, keys and meta as lists."""
    return {
        "video": torch.stack([s["video"] for s in samples]),
        "audio": torch.stack([s["audio"] for s in samples]),
        "has_audio": torch.tensor([s["has_audio"] for s in samples]),
        "label": torch.tensor([s["label"] for s in samples]),
        "key": [s["key"] for s in samples],
        "meta": [s["meta"] for s in samples],
    }


class SyntheticClips(IterableDataset):
    """`num_samples` synthetic videos shaped like `load_shards` samples; every sample once per epoch.

    Like the loader's dataset, it has `num_samples`, `label_names` and `set_epoch`.
    Samples are split over DDP ranks (`rank`, `world_size`) and then over DataLoader workers.
    `audio_share` of the videos have audio; the rest carry silent (zero) log-mel and has_audio False.
    """

    def __init__(
        self,
        num_samples: int,
        frames: int,
        size: int,
        audio_seconds: float,
        n_mels: int,
        views: int = 2,
        sample_rate: int = 16000,
        classes: int = 4,
        audio_share: float = 1.0,
        augment: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.num_samples, self.frames, self.size, self.n_mels = num_samples, frames, size, n_mels
        self.mel_frames = int(audio_seconds * sample_rate) // HOP + 1
        self.views, self.classes, self.audio_share, self.augment = views, classes, audio_share, augment
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.label_names = [f"class{c}" for c in range(classes)]
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()  # reaches persistent workers

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    def sample(self, index: int) -> dict:
        content = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        label = index % self.classes
        has_audio = bool(torch.rand((), generator=content) < self.audio_share)
        shade = torch.linspace(-1, 1, self.classes)[label]
        video = shade + 0.5 * torch.randn(3, self.frames, self.size, self.size, generator=content)
        audio = shade + 0.5 * torch.randn(1, self.n_mels, self.mel_frames, generator=content)
        views = video.expand(self.views, *video.shape).clone()
        mel = (
            audio.expand(self.views, *audio.shape).clone()
            if has_audio
            else torch.zeros(self.views, *audio.shape)
        )
        if self.augment:
            jitter = torch.Generator().manual_seed((self.seed * 1_000_003 + index) * 1009 + int(self._epoch))
            views += 0.3 * torch.randn(views.shape, generator=jitter)
        return {
            "video": views,
            "audio": mel,
            "has_audio": has_audio,
            "label": label,
            "key": f"{7_000_000_000_000_000_000 + index}",
            "meta": {"index": index, "label": label},
        }

    def __iter__(self) -> Iterator[dict]:
        order = torch.arange(self.num_samples)
        if self.augment:
            order = torch.randperm(
                self.num_samples, generator=torch.Generator().manual_seed(self.seed + int(self._epoch))
            )
        order = order[self.rank :: self.world_size]
        worker = get_worker_info()
        if worker is not None:
            order = order[worker.id :: worker.num_workers]
        for index in order.tolist():
            yield self.sample(index)


def synthetic_clips(preset: Preset, num_samples: int, **options: object) -> SyntheticClips:
    """SyntheticClips shaped by `preset` (frames, size, audio seconds, mels)."""
    return SyntheticClips(
        num_samples, preset.frames, preset.size, preset.audio_seconds, preset.n_mels, **options
    )


def synthetic_epoch(dataset: SyntheticClips, batch_size: int, epoch: int) -> Iterator[dict]:
    """The batches of one epoch of `dataset`, in order; the last partial batch is dropped."""
    dataset.set_epoch(epoch)
    samples = iter(dataset)
    while len(batch := [s for _, s in zip(range(batch_size), samples, strict=False)]) == batch_size:
        yield stack_samples(batch)
