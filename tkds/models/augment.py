"""Audio augmentation on log-mel batches, run on the training device.

The loader already crops audio in time and augments video. These act on a log-mel tensor of shape
(..., n_mels, frames), one independent draw per clip (every leading index), using torch's global RNG so
that a resumed run draws the same numbers. Log-mel is taken as natural-log power, log(mel + ε).
"""

from __future__ import annotations

import math

import torch

LOG_PER_DB = math.log(10) / 10  # a gain of g dB adds g·ln(10)/10 to natural-log power


def _per_clip(mel: torch.Tensor) -> tuple[int, ...]:
    """The shape of one value per clip, broadcastable against `mel`."""
    return (*mel.shape[:-2], 1, 1)


def random_gain(mel: torch.Tensor, max_db: float) -> torch.Tensor:
    """A volume change, uniform in ±max_db: a constant added to every bin of a clip."""
    shift = (torch.rand(_per_clip(mel), device=mel.device) * 2 - 1) * max_db * LOG_PER_DB
    return mel + shift


def add_noise(mel: torch.Tensor, std: float) -> torch.Tensor:
    """Gaussian noise of standard deviation `std` (log units) on every bin."""
    return mel + torch.randn_like(mel) * std


def mask_band(mel: torch.Tensor, axis: int, max_width: int, masks: int) -> torch.Tensor:
    """SpecAugment masking: `masks` bands of 0..max_width bins along `axis` (-1 time, -2 frequency).

    Masked bins take the clip's mean rather than 0, because 0 is a loud value in the log domain.
    """
    size = mel.shape[axis]
    view = [1] * mel.dim()
    view[axis] = size
    position = torch.arange(size, device=mel.device).view(view)
    fill = mel.mean(dim=(-2, -1), keepdim=True)
    for _ in range(masks):
        width = torch.randint(0, max_width + 1, _per_clip(mel), device=mel.device)
        start = (torch.rand(_per_clip(mel), device=mel.device) * (size - width + 1)).floor()
        inside = (position >= start) & (position < start + width)
        mel = torch.where(inside, fill, mel)
    return mel


def augment_audio(
    mel: torch.Tensor,
    gain_db: float = 6.0,
    noise_std: float = 0.1,
    time_masks: int = 2,
    time_share: float = 0.1,
    freq_masks: int = 2,
    freq_share: float = 0.125,
) -> torch.Tensor:
    """Gain, noise, then time and frequency masks; mask widths are up to a share of the axis."""
    mel = add_noise(random_gain(mel, gain_db), noise_std)
    mel = mask_band(mel, -1, int(mel.shape[-1] * time_share), time_masks)
    return mask_band(mel, -2, int(mel.shape[-2] * freq_share), freq_masks)
