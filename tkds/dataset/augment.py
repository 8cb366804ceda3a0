"""Clip-consistent augmentation: one draw of parameters per view, applied alike to all of its frames.

A view is uint8 frames (T, 3, H, W). Its crop, flip and colour are drawn once and applied to the
whole clip at once: the crop and resize as one batched interpolation, the colour jitter, grayscale
and normalisation as one affine map of RGB over all pixels (a 3×3 matrix product).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# The statistics torchvision's Kinetics-400 video models were trained with.
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
LUMA = (0.299, 0.587, 0.114)

Box = tuple[int, int, int, int]  # top, left, height, width


@dataclass(frozen=True)
class ViewAugment:
    """One view's draws; factors of 1 and no flip or grayscale leave its colours as decoded."""

    box: Box
    flip: bool = False
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    grayscale: bool = False


def random_resized_box(
    rng: np.random.Generator,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.3, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Box:
    """torchvision's RandomResizedCrop box: a random area share and aspect ratio, else the centre."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    # A tall frame may not fit the ratio range: fall back to the largest allowed centre crop.
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def center_square_box(height: int, width: int) -> Box:
    """The centred square on the short side."""
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def draw_view_augment(
    rng: np.random.Generator,
    height: int,
    width: int,
    jitter: float = 0.4,
    p_jitter: float = 0.8,
    p_grayscale: float = 0.2,
    p_flip: float = 0.5,
) -> ViewAugment:
    """SimCLR-style draws: random resized crop, flip, colour jitter with probability p_jitter, grayscale."""
    box = random_resized_box(rng, height, width)
    flip = bool(rng.random() < p_flip)
    factors = rng.uniform(1 - jitter, 1 + jitter, 3) if rng.random() < p_jitter else np.ones(3)
    brightness, contrast, saturation = (float(f) for f in factors)
    return ViewAugment(box, flip, brightness, contrast, saturation, bool(rng.random() < p_grayscale))


def crop_resize(frames: torch.Tensor, box: Box, size: int) -> torch.Tensor:
    """Crop uint8 frames (T, 3, H, W) to `box` and resize them to size×size, antialiased.

    uint8 in channels-last memory takes torch's fast antialiased path: about 3× faster than float.
    """
    top, left, h, w = box
    crop = frames[:, :, top : top + h, left : left + w].contiguous(memory_format=torch.channels_last)
    return F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def colour_transform(view: ViewAugment, mean_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(3×3 matrix, offset) on RGB in [0, 1] equal to brightness, contrast, saturation, then grayscale.

    Contrast blends towards the clip's mean grey (one mean for all frames), taken from `mean_rgb`.
    Unlike torchvision, values are clamped once at the end rather than after each step.
    """
    eye = np.eye(3)
    grey = np.tile(LUMA, (3, 1))  # every output channel the luma of the input
    matrix = eye * view.brightness
    mean_grey = grey[0] @ matrix @ mean_rgb
    matrix = matrix * view.contrast
    offset = np.full(3, (1 - view.contrast) * mean_grey)
    saturate = eye * view.saturation + grey * (1 - view.saturation)
    matrix, offset = saturate @ matrix, saturate @ offset
    if view.grayscale:
        matrix, offset = grey @ matrix, grey @ offset
    return matrix, offset


def view_clip(
    frames: torch.Tensor, view: ViewAugment, size: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    """One view from uint8 frames (T, 3, H, W): cropped, flipped, coloured and Kinetics-normalised.

    Returns (or fills `out` with) float32 (3, T, size, size), the layout torchvision's video models take.
    """
    clip = crop_resize(frames, view.box, size)
    if view.flip:
        clip = clip.flip(-1)
    rgb = torch.empty(3, clip.shape[0], size, size).copy_(clip.permute(1, 0, 2, 3)).view(3, -1)
    matrix, offset = colour_transform(view, rgb.mean(dim=1).numpy() / 255)
    # One pass for /255, colour and normalisation: the rows of the colour map scaled by 1/std.
    mean, std = np.array(KINETICS_MEAN), np.array(KINETICS_STD)
    scale = torch.from_numpy(matrix / 255 / std[:, None]).float()
    shift = torch.from_numpy((offset - mean) / std).float()[:, None]
    out = torch.empty(3, clip.shape[0], size, size) if out is None else out
    torch.addmm(shift, scale, rgb, out=out.view(3, -1))
    for channel, (m, s) in enumerate(zip(KINETICS_MEAN, KINETICS_STD, strict=True)):
        out[channel].clamp_(-m / s, (1 - m) / s)  # [0, 1] before normalisation
    return out
