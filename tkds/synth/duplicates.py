"""Planted near duplicates: re-uploads of an earlier video, so that dedupe has a ground truth.

A near duplicate is a post of its own (id, author, caption, sound, counts) whose frames are another
video's frames, changed the way re-uploads change them: re-encoded at another quality, upscaled,
cropped by a pixel, or with TikTok's download watermark burnt in. The variants are mild on purpose:
each stays within what the shard builder's 64-bit pHash matches (a first frame within 8 bits, a mean
within 4), so a dedupe that misses one is wrong. Measured on SynthTok frames, stronger ones are not
matched reliably: a CRF 30 re-encode, a 2 % crop or an opaque caption moved 5-20 bits on a fifth to
half of the sources. For the same reason a source has a blobs backdrop (`SOURCE_BACKDROPS`): fine
stripes and checkerboards alias in pHash's 32x32 thumbnail, and a centred radial gradient has no odd
low frequencies, so those bits sit at the median and flip on noise; a CRF 26 re-encode or an upscale
of such videos moved up to 5.3 bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from tkds.synth.visuals import _font

KINDS = ("reencode", "rescale", "crop", "overlay")
SOURCE_BACKDROPS = (3,)  # blobs (see `visuals._background`): not stripes, checker or radial
REENCODE_CRF_STEP = (2, 3)  # added to the source's CRF (23 at the easy difficulty); both ends included
RESCALE_FACTOR = (1.25, 2.0)  # an upscale, as re-uploads to a 720p account do
CROP_SHARE = (0.004, 0.008)  # of the short side, cut from every edge (at least a pixel)
WATERMARK = "TikTok @{}"  # the source creator's handle, as TikTok burns it into a download
WATERMARK_OPACITY = 0.25


@dataclass(frozen=True)
class Variant:
    """How a near duplicate's frames derive from its source's: a pure function of this."""

    kind: str  # one of KINDS
    of: str  # the source video's id
    crf: int | None = None  # a re-encode's; otherwise the source's
    size: tuple[int, int] | None = None  # (width, height) after a rescale or a crop
    crop_origin: tuple[int, int] = (0, 0)  # (x, y) of the kept region's top-left corner
    text: str = ""  # burnt in, in white at `opacity`, near the top or the bottom edge
    text_top: bool = False
    opacity: float = 1.0


def plan_variant(
    kind: str, of: str, width: int, height: int, crf: int, source_handle: str, rng: np.random.Generator
) -> Variant:
    """A variant of `kind` of video `of` (`width` x `height`, encoded at `crf`), drawn from `rng`."""
    if kind == "reencode":
        step = int(rng.integers(REENCODE_CRF_STEP[0], REENCODE_CRF_STEP[1] + 1))
        return Variant(kind, of, crf=crf + step)
    if kind == "rescale":
        factor = rng.uniform(*RESCALE_FACTOR)
        return Variant(kind, of, size=(_even(width * factor), _even(height * factor)))
    if kind == "crop":
        cut = max(1, round(min(width, height) * rng.uniform(*CROP_SHARE)))
        return Variant(kind, of, size=(width - 2 * cut, height - 2 * cut), crop_origin=(cut, cut))
    if kind == "overlay":
        top = bool(rng.random() < 0.5)
        return Variant(
            kind, of, text=WATERMARK.format(source_handle), text_top=top, opacity=WATERMARK_OPACITY
        )
    raise ValueError(f"unknown near-duplicate kind {kind!r}")


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2))


def apply_variant(frames: np.ndarray, variant: Variant) -> np.ndarray:
    """The near duplicate's frames (T, H, W, 3) uint8 from its source's."""
    if variant.kind == "rescale":
        return np.stack(
            [np.asarray(Image.fromarray(frame).resize(variant.size, Image.BICUBIC)) for frame in frames]
        )
    if variant.kind == "crop":
        (x, y), (width, height) = variant.crop_origin, variant.size
        return np.ascontiguousarray(frames[:, y : y + height, x : x + width])
    if variant.kind == "overlay":
        return _burn_in(frames, variant.text, variant.text_top, variant.opacity)
    return frames


def _burn_in(frames: np.ndarray, text: str, top: bool, opacity: float) -> np.ndarray:
    """`text` in white at `opacity`, near the top or the bottom left corner of every frame."""
    _, height, width, _ = frames.shape
    size = max(8, width // 20)
    band = Image.new("L", (width, int(size * 1.5)), 0)
    ImageDraw.Draw(band).text((width // 20, size // 5), text, font=_font(size), fill=255)
    alpha = np.asarray(band, dtype=np.float32)[..., None] * (opacity / 255)
    row = 2 if top else height - alpha.shape[0] - 2
    out = frames.copy()
    region = out[:, row : row + alpha.shape[0]].astype(np.float32)
    out[:, row : row + alpha.shape[0]] = np.rint(region + alpha * (250 - region)).astype(np.uint8)
    return out
