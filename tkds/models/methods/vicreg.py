"""`vicreg`: the non-contrastive peer, variance-invariance-covariance on two views (Bardes et al., 2022).

A three-layer expander (`preset.proj_hidden_dim` wide, `preset.proj_dim` out) and the paper's loss
weights 25/25/1; no negatives, no temperature. Augmentations: as in simclr. The audio encoder is not
trained.
"""

from __future__ import annotations

import torch

from tkds.models.heads import mlp_head
from tkds.models.losses import vicreg
from tkds.models.methods.base import Batch, Method, encode_views, gather
from tkds.models.presets import Preset


class VICReg(Method):
    name = "vicreg"

    def __init__(self, preset: Preset) -> None:
        super().__init__(preset)
        hidden = preset.proj_hidden_dim
        self.expander = mlp_head([self.video_encoder.dim, hidden, hidden, preset.proj_dim])

    def training_step(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        z = encode_views(self.video_encoder, self.expander, batch["video"][:, :2])
        return vicreg(gather(z[:, 0]), gather(z[:, 1])), {}
