"""`supervised`: cross-entropy on the label column, the ceiling on SynthTok (labels are its categories).

A linear classifier on the video backbone, trained on every view; samples with label −1 (unknown) are
left out of the loss. Augmentations: the loader's, as in simclr. The audio encoder is not trained.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tkds.errors import TkdsError
from tkds.models.methods.base import Batch, Method
from tkds.models.presets import Preset


class Supervised(Method):
    name = "supervised"
    needs = "label"
    fallback = "a self-supervised method (simclr, av-simclr, moco, vicreg)"

    def __init__(self, preset: Preset, num_classes: int | None = None) -> None:
        super().__init__(preset)
        if not num_classes:
            raise TkdsError("supervised needs the number of label classes; pass num_classes")
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.video_encoder.dim, num_classes)

    def config(self) -> dict:
        return {"num_classes": self.num_classes}

    def training_step(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        video = batch["video"]
        logits = self.classifier(self.video_encoder(video.flatten(0, 1)))
        labels = batch["label"].repeat_interleave(video.shape[1])
        # A sum over known labels, divided by at least 1: a batch with no labels gives 0, not NaN.
        known = (labels >= 0).sum().clamp(min=1)
        return F.cross_entropy(logits, labels, ignore_index=-1, reduction="sum") / known, {}
