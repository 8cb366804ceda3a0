"""A plug-in method in one file: SimSiam (Chen & He, 2021) on tkds's two video views.

    PYTHONPATH=examples tkds bench --shards SHARDS --out RUN --methods random,my_method:SimSiam

No negatives and no momentum encoder: a predictor on one view's projection chases the other view's
projection, with the gradient stopped on that target. See docs/plugins.md for the protocol.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tkds.models.heads import mlp_head
from tkds.models.methods import Method
from tkds.models.methods.base import Batch, encode_views
from tkds.models.presets import Preset


class SimSiam(Method):
    name = "simsiam"  # for messages; runs and rows are named as you name it (my_method:SimSiam)
    modality = "video"  # "audio-visual" would score the audio and audio-visual embeddings too

    def __init__(self, preset: Preset) -> None:
        super().__init__(preset)  # builds self.video_encoder and self.audio_encoder from the preset
        dim, hidden = preset.proj_dim, preset.proj_hidden_dim
        self.projector = mlp_head([self.video_encoder.dim, hidden, dim])
        self.predictor = mlp_head([dim, hidden // 4, dim])

    def training_step(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        z = encode_views(self.video_encoder, self.projector, batch["video"][:, :2])  # (B, 2, dim)
        p = self.predictor(z.flatten(0, 1)).unflatten(0, z.shape[:2])
        target = z.detach()  # the stop-gradient
        loss = -(F.cosine_similarity(p[:, 0], target[:, 1]) + F.cosine_similarity(p[:, 1], target[:, 0]))
        loss = loss.mean() / 2
        return loss, {"collapse": z[:, 0].std(dim=0).mean().detach()}
