"""Named training recipes. A preset is data: the leaderboard prints it with its `config_hash()`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from tkds.errors import TkdsError


@dataclass(frozen=True)
class Preset:
    """The whole recipe: backbones, clip shape, batch, schedule, optimizer and method options.

    `batch_size` is global (split over DDP ranks). `queue_size` and `momentum` are MoCo's; the rest
    serves every method. `checkpoint_every` counts optimizer steps.
    """

    name: str
    video_backbone: str
    audio_backbone: str
    frames: int
    size: int
    audio_seconds: float
    n_mels: int
    batch_size: int
    epochs: int
    optimizer: str  # "adamw" or "lars"
    lr: float
    weight_decay: float
    warmup_epochs: float
    temperature: float
    proj_hidden_dim: int
    proj_dim: int
    queue_size: int
    momentum: float
    checkpoint_every: int
    compile: bool
    sample_rate: int = 16000

    def clip_options(self) -> dict:
        """What the loader needs to cut this recipe's clips: `load_shards(..., **preset.clip_options())`."""
        return {
            "frames": self.frames,
            "size": self.size,
            "audio_seconds": self.audio_seconds,
            "sample_rate": self.sample_rate,
            "n_mels": self.n_mels,
        }

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def config_hash(self) -> str:
        """12 hex digits of the sha256 of the preset as sorted JSON: equal recipes, equal hashes."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in [
        # Minutes on 2 CPU cores for ~200 training videos: a smoke test of the whole benchmark.
        Preset(
            name="cpu-tiny",
            video_backbone="cnn3d-tiny",
            audio_backbone="cnn2d-tiny",
            frames=8,
            size=64,
            audio_seconds=1.0,
            n_mels=64,
            batch_size=32,
            epochs=5,
            optimizer="adamw",
            lr=1e-3,
            weight_decay=1e-4,
            warmup_epochs=1,
            temperature=0.1,
            proj_hidden_dim=256,
            proj_dim=64,
            queue_size=128,
            momentum=0.99,
            checkpoint_every=20,
            compile=False,
        ),
        # About an hour on 2 CPU cores: long enough for av-simclr > simclr > random to show.
        Preset(
            name="cpu-small",
            video_backbone="cnn3d-small",
            audio_backbone="cnn2d-small",
            frames=8,
            size=96,
            audio_seconds=2.0,
            n_mels=64,
            batch_size=32,
            epochs=30,
            optimizer="adamw",
            lr=1e-3,
            weight_decay=1e-4,
            warmup_epochs=2,
            temperature=0.1,
            proj_hidden_dim=512,
            proj_dim=128,
            queue_size=512,
            momentum=0.99,
            checkpoint_every=100,
            compile=False,
        ),
        # One GPU, R(2+1)D-18 at 16×112²; AVID's small recipe, with the batch a single GPU holds.
        Preset(
            name="gpu-small",
            video_backbone="r2plus1d_18",
            audio_backbone="resnet18",
            frames=16,
            size=112,
            audio_seconds=2.0,
            n_mels=64,
            batch_size=64,
            epochs=30,
            optimizer="adamw",
            lr=5e-4,
            weight_decay=1e-5,
            warmup_epochs=2,
            temperature=0.1,
            proj_hidden_dim=512,
            proj_dim=128,
            queue_size=4096,
            momentum=0.99,
            checkpoint_every=500,
            compile=True,
        ),
        # AVID's batch 256 and ~100 epochs, with SimCLR's LARS (lr 0.3 × batch / 256).
        Preset(
            name="gpu-full",
            video_backbone="r2plus1d_18",
            audio_backbone="resnet18",
            frames=16,
            size=112,
            audio_seconds=2.0,
            n_mels=64,
            batch_size=256,
            epochs=100,
            optimizer="lars",
            lr=0.3,
            weight_decay=1e-6,
            warmup_epochs=10,
            temperature=0.1,
            proj_hidden_dim=512,
            proj_dim=128,
            queue_size=16384,
            momentum=0.996,
            checkpoint_every=1000,
            compile=True,
        ),
    ]
}


def get_preset(preset: str | Preset) -> Preset:
    """The preset called `preset` (a Preset passes through)."""
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise TkdsError(f"unknown preset {preset!r}; use one of: {', '.join(PRESETS)}")
    return PRESETS[preset]
