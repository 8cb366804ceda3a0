"""A plug-in video backbone: 2D convolutions on each frame, averaged over time.

    from tkds.models.presets import PRESETS, Preset
    preset = dataclasses.replace(PRESETS["cpu-tiny"], name="my-tiny", video_backbone="my_encoder:FrameNet")

The contract (docs/plugins.md): built with no arguments; `dim` is the output width; video clips
(N, 3, T, H, W) in, features (N, dim) out (an audio backbone: log-mel (N, 1, n_mels, L) in).
"""

from __future__ import annotations

import torch
from torch import nn


class FrameNet(nn.Module):
    dim = 32

    def __init__(self) -> None:
        super().__init__()
        self.frames = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, self.dim, 3, stride=2, padding=1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        n, _, t = video.shape[:3]
        per_frame = self.frames(video.transpose(1, 2).flatten(0, 1))  # (N·T, dim)
        return per_frame.unflatten(0, (n, t)).mean(dim=1)
