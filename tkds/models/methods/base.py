"""The interface every method implements, and the pieces methods share."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.distributed as dist
from torch import nn

from tkds.models.encoders import Encoder, audio_encoder, video_encoder
from tkds.models.presets import Preset

Batch = dict  # the loader's collated batch: video, audio, has_audio, label, key, meta


class Method(nn.Module):
    """A self-supervised (or reference) method: two encoders, its heads, and its loss.

    Every method has a video and an audio encoder, so that downstream tasks always get both
    embeddings; `learns_audio` says whether the audio one is trained. `needs` names the batch field the
    method cannot learn without ("audio" or "label"); `fallback` is the advice when shards lack it.
    """

    name: ClassVar[str]
    modality: ClassVar[str] = "video"
    learns_audio: ClassVar[bool] = False
    trainable: ClassVar[bool] = True
    needs: ClassVar[str | None] = None
    fallback: ClassVar[str] = ""

    def __init__(self, preset: Preset) -> None:
        super().__init__()
        self.preset = preset
        self.video_encoder = video_encoder(preset.video_backbone)
        self.audio_encoder = audio_encoder(preset.audio_backbone)

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`training_step`, under the name DDP hooks into."""
        return self.training_step(batch)

    def training_step(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss on one batch, and named detached parts of it for the log."""
        raise NotImplementedError(f"{self.name} does not train")

    def after_step(self) -> None:
        """Runs after every optimizer step; momentum methods update their target network here."""

    def use_channels_last(self) -> Method:
        """Channels-last convolutions in every encoder: faster on CUDA, and on CPU for the 3D CNN."""
        for module in self.modules():
            if isinstance(module, Encoder):
                module.use_channels_last()
        return self

    def config(self) -> dict:
        """Constructor arguments beyond the preset, stored in checkpoints to rebuild the method."""
        return {}

    def embed_video(self, video: torch.Tensor) -> torch.Tensor:
        """Backbone features (N, dim) of clips (N, 3, T, H, W): no projection head."""
        return self.video_encoder(video)

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """Backbone features (N, dim) of log-mel clips (N, 1, n_mels, L): no projection head."""
        return self.audio_encoder(audio)


def encode_views(encoder: Encoder, head: nn.Module, views: torch.Tensor) -> torch.Tensor:
    """head(encoder(x)) for every view of (B, V, ...) in one pass, as (B, V, D): BN sees all views."""
    return head(encoder(views.flatten(0, 1))).unflatten(0, views.shape[:2])


def gather(x: torch.Tensor) -> torch.Tensor:
    """`x` from every DDP rank, concatenated in rank order; gradients flow back to each rank's part.

    Each rank then computes the loss over the global batch: the gather's backward sums the ranks'
    gradients for the local part, and DDP's mean over ranks turns that sum back into the global loss's
    gradient.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    # The functional collective, which torch.distributed.nn.functional.all_gather's deprecation names.
    from torch.distributed._functional_collectives import all_gather_single_autograd

    return all_gather_single_autograd(x.contiguous(), 0, dist.group.WORLD)
