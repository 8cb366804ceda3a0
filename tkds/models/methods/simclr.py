"""`simclr`: two visual views of a video, NT-Xent (Chen et al., 2020; CVRL's video form).

Augmentations: the loader's clip-consistent crop, flip, colour jitter, grayscale and temporal jitter,
drawn independently for the two views. The audio encoder is not trained.
"""

from __future__ import annotations

import torch

from tkds.models.heads import mlp_head
from tkds.models.losses import nt_xent
from tkds.models.methods.base import Batch, Method, encode_views, gather
from tkds.models.presets import Preset


class SimCLR(Method):
    name = "simclr"

    def __init__(self, preset: Preset) -> None:
        super().__init__(preset)
        self.projector = mlp_head([self.video_encoder.dim, preset.proj_hidden_dim, preset.proj_dim])

    def training_step(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        z = encode_views(self.video_encoder, self.projector, batch["video"][:, :2])
        return nt_xent(gather(z[:, 0]), gather(z[:, 1]), self.preset.temperature), {}
