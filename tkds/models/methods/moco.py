"""`moco`: MoCo v2 on video, a momentum key encoder and a queue of negatives (He et al., 2020).

Symmetric: view 1's query against view 2's key and vice versa, negatives from a queue of
`preset.queue_size` keys of earlier batches; the key encoder is an EMA (`preset.momentum`) of the query
encoder, and embeddings come from the query encoder. Augmentations: as in simclr. No shuffled BN, so
the key encoder's BN sees the same batch as the query's. The audio encoder is not trained.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from tkds.models.heads import mlp_head
from tkds.models.losses import queue_info_nce
from tkds.models.methods.base import Batch, Method, encode_views, gather
from tkds.models.presets import Preset


class MoCo(Method):
    name = "moco"

    def __init__(self, preset: Preset) -> None:
        super().__init__(preset)
        self.projector = mlp_head([self.video_encoder.dim, preset.proj_hidden_dim, preset.proj_dim])
        self.key_encoder = copy.deepcopy(self.video_encoder).requires_grad_(False)
        self.key_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(preset.queue_size, preset.proj_dim), dim=1))
        self.register_buffer("queue_next", torch.zeros((), dtype=torch.long))

    def training_step(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        video, tau = batch["video"][:, :2], self.preset.temperature
        q = encode_views(self.video_encoder, self.projector, video)
        with torch.no_grad():
            k = encode_views(self.key_encoder, self.key_projector, video)
        # The loss keeps its own copy of the queue: enqueueing in place would break its backward.
        queue = self.queue.clone()
        loss = (
            queue_info_nce(q[:, 0], k[:, 1], queue, tau) + queue_info_nce(q[:, 1], k[:, 0], queue, tau)
        ) / 2
        self._enqueue(F.normalize(gather(k[:, 0]), dim=1))
        return loss, {}

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        size = self.queue.shape[0]
        keys = keys[-size:]
        slots = (self.queue_next + torch.arange(keys.shape[0], device=keys.device)) % size
        self.queue[slots] = keys.to(self.queue.dtype)
        self.queue_next.copy_((self.queue_next + keys.shape[0]) % size)

    @torch.no_grad()
    def after_step(self) -> None:
        m = self.preset.momentum
        for online, target in ((self.video_encoder, self.key_encoder), (self.projector, self.key_projector)):
            for p, p_target in zip(online.parameters(), target.parameters(), strict=True):
                p_target.mul_(m).add_(p.detach(), alpha=1 - m)
