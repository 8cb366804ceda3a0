"""Frames of a SynthTok video: a category's shapes, motion and palette over an author's backdrop.

Shapes are drawn only inside their bounding box, and noise is a uint8 add on colours kept below
255 - NOISE_HEADROOM, so a 144x256 frame costs well under a millisecond.

Above the easy difficulty, distractor shapes (clutter) and a panning camera hide the category; their
draws come from a stream of their own, so a video without them keeps its bytes.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tkds.synth.factors import SHAPES

NOISE_HEADROOM = 16  # the largest noise value; every colour stays at or below 255 - this


@dataclass(frozen=True)
class VisualSpec:
    width: int
    height: int
    fps: int
    frames: int
    shape: str
    motion: str
    hue: float
    saturation: float
    size: float  # shape radius as a fraction of the width
    speed: float  # motion cycles per second
    count: int
    background: int
    background_hues: tuple[float, float]
    overlay_text: str
    overlay_top: bool
    noise_level: float
    seed: int
    clutter: int = 0  # distractor shapes: any shape, any hue, drifting behind the category's shapes
    camera_px: float = 0.0  # amplitude of the camera's pan in pixels; it moves the whole scene


def hsv_to_rgb(hue_deg: float, saturation: float, value: float) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb((hue_deg % 360) / 360, min(max(saturation, 0), 1), min(max(value, 0), 1))
    return np.array([r, g, b]) * (255 - NOISE_HEADROOM)


def _background(spec: VisualSpec, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    period = rng.uniform(14, 40)
    if spec.background == 0:
        weight = 0.5 + 0.5 * np.sin(2 * np.pi * (x + y) / period)
    elif spec.background == 1:
        weight = ((x // period + y // period) % 2).astype(np.float32)
    elif spec.background == 2:
        weight = np.clip(np.hypot(x - width / 2, y - height / 2) / (0.7 * height), 0, 1)
    else:
        weight = np.zeros_like(x)
        for _ in range(4):
            cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.15, 0.4) * width
            weight += np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        weight = np.clip(weight, 0, 1)
    first = hsv_to_rgb(spec.background_hues[0], 0.3, 0.35)
    second = hsv_to_rgb(spec.background_hues[1], 0.3, 0.6)
    return (first + weight[..., None] * (second - first)).astype(np.uint8)


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _text_overlay(spec: VisualSpec) -> tuple[np.ndarray, np.ndarray, int]:
    """The caption burnt into the video, as a mask, its RGB pixels, and its top row."""
    size = max(9, spec.width // 12)
    band = Image.new("RGBA", (spec.width, int(size * 1.6)), (0, 0, 0, 0))
    ImageDraw.Draw(band).text(
        (spec.width // 16, size // 4),
        spec.overlay_text,
        font=_font(size),
        fill=(239, 239, 239, 255),
        stroke_width=1,
        stroke_fill=(10, 10, 10, 255),
    )
    pixels = np.asarray(band)
    mask = pixels[..., 3] > 127
    top = int(spec.height * 0.08) if spec.overlay_top else int(spec.height * 0.8)
    return mask, pixels[..., :3].copy(), top


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    if shape == "circle":
        return dx * dx + dy * dy <= radius * radius
    if shape == "ring":
        d2 = dx * dx + dy * dy
        return (d2 <= radius * radius) & (d2 >= (0.6 * radius) ** 2)
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.8 * radius
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= radius
    if shape == "cross":
        ax, ay = np.abs(dx), np.abs(dy)
        return ((ax <= radius / 3) & (ay <= radius)) | ((ay <= radius / 3) & (ax <= radius))
    if shape == "triangle":
        return (dy <= radius / 2) & (np.abs(dx) * math.sqrt(3) <= dy + radius)
    if shape == "stripes":
        return (dx * dx + dy * dy <= radius * radius) & (np.sin(dx * (2 * np.pi / (0.5 * radius))) > 0)
    if shape == "star":
        theta = np.arctan2(dy, dx)
        return np.hypot(dx, dy) <= radius * (0.55 + 0.45 * np.cos(5 * theta))
    raise ValueError(f"unknown shape {shape!r}")


def _camera_pan(spec: VisualSpec, rng: np.random.Generator) -> np.ndarray:
    """The camera's pan (T, 2) in whole pixels: a slow sway in x and y, up to `camera_px` each way."""
    if not spec.camera_px:
        return np.zeros((spec.frames, 2), dtype=int)
    t = np.arange(spec.frames)[:, None] / spec.fps
    hertz, phase = rng.uniform(0.15, 0.6, 2), rng.uniform(0, 2 * np.pi, 2)
    return np.rint(spec.camera_px * np.sin(2 * np.pi * hertz * t + phase)).astype(int)


@dataclass(frozen=True)
class _Clutter:
    """Distractor shapes: where each starts, how many pixels a frame it drifts, and how it looks."""

    shapes: tuple[str, ...]
    start: np.ndarray  # (n, 2) x, y
    velocity: np.ndarray  # (n, 2) px per frame
    radius: np.ndarray
    colours: tuple[np.ndarray, ...]


def _clutter(spec: VisualSpec, rng: np.random.Generator) -> _Clutter:
    n = spec.clutter
    return _Clutter(
        shapes=tuple(SHAPES[i] for i in rng.integers(0, len(SHAPES), n)),
        start=rng.uniform(0, 1, (n, 2)) * (spec.width, spec.height),
        velocity=rng.normal(0, 0.012 * spec.width, (n, 2)),
        radius=rng.uniform(0.06, 0.16, n) * spec.width,
        colours=tuple(
            hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0.3, 0.9), rng.uniform(0.6, 1.0)).astype(np.uint8)
            for _ in range(n)
        ),
    )


def _stamp(frame: np.ndarray, shape: str, cx: float, cy: float, r: float, angle: float, colour) -> None:
    """Paint one shape into `frame`, touching only its bounding box."""
    height, width = frame.shape[:2]
    x0, x1 = max(0, int(cx - r)), min(width, int(cx + r) + 1)
    y0, y1 = max(0, int(cy - r)), min(height, int(cy + r) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    # np.ogrid[y0 - cy : y1 - cy, ...]'s values, always y1 - y0 of them (ogrid's count can be one more)
    dy = (np.arange(y1 - y0) + (y0 - cy))[:, None]
    dx = (np.arange(x1 - x0) + (x0 - cx))[None, :]
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        dx, dy = dx * c + dy * s, dy * c - dx * s
    frame[y0:y1, x0:x1][_shape_mask(shape, dx, dy, r)] = colour


def render_frames(spec: VisualSpec) -> np.ndarray:
    """All frames of one video, (T, H, W, 3) uint8 RGB."""
    rng = np.random.default_rng(spec.seed)
    nuisance = np.random.default_rng([spec.seed, 1])
    height, width, frames = spec.height, spec.width, spec.frames
    pan = _camera_pan(spec, nuisance)
    extent = int(np.abs(pan).max(initial=0))
    jitter = max(4, width // 24)
    margin = jitter + extent  # the backdrop is larger than the frame by what the camera can see
    background = _background(spec, height + 2 * margin, width + 2 * margin, rng)
    clutter = _clutter(spec, nuisance)
    overlay_mask, overlay_pixels, overlay_top = _text_overlay(spec)
    overlay_bottom = min(height, overlay_top + overlay_mask.shape[0])
    overlay_mask = overlay_mask[: overlay_bottom - overlay_top]
    overlay_pixels = overlay_pixels[: overlay_bottom - overlay_top]

    # Camera jitter: a smooth random walk inside the margin, on top of the pan (which moves shapes too).
    walk = np.cumsum(rng.normal(0, 0.8, (frames, 2)), axis=0)
    offsets = np.clip(jitter + walk, 0, 2 * jitter).astype(int) + extent + pan

    n = spec.count
    base_x = rng.uniform(0.25, 0.75, n) * width
    base_y = rng.uniform(0.2, 0.8, n) * height
    phase = rng.uniform(0, 2 * np.pi, n)
    radius = spec.size * width * rng.uniform(0.75, 1.25, n)
    colours = [
        hsv_to_rgb(spec.hue + rng.normal(0, 4), spec.saturation, rng.uniform(0.75, 1.0)).astype(np.uint8)
        for _ in range(n)
    ]
    amplitude = 0.22 * width
    shake = rng.normal(0, 0.05 * width, (frames, n, 2))
    noise = rng.integers(0, int(2 * spec.noise_level) + 1, (3, height, width, 3), dtype=np.uint8)

    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    for t in range(frames):
        frame = out[t]
        ox, oy = offsets[t]
        frame[:] = background[oy : oy + height, ox : ox + width]
        px, py = pan[t]
        for i, shape in enumerate(clutter.shapes):
            cx, cy = (clutter.start[i] + t * clutter.velocity[i]) % (width, height)
            _stamp(frame, shape, cx - px, cy - py, clutter.radius[i], 0.0, clutter.colours[i])
        angle_t = 2 * np.pi * spec.speed * t / spec.fps
        for i in range(n):
            cycle = angle_t + phase[i]
            cx, cy, scale, angle = base_x[i], base_y[i], 1.0, 0.0
            if spec.motion == "orbit":
                cx, cy = cx + amplitude * math.cos(cycle), cy + amplitude * math.sin(cycle)
            elif spec.motion == "bounce":
                cx += amplitude * (2 * abs((cycle / (2 * np.pi)) % 2 - 1) - 1)
                cy -= amplitude * abs(math.sin(cycle))
            elif spec.motion == "zoom":
                scale = 1 + 0.45 * math.sin(cycle)
            elif spec.motion == "drift":
                cx = (cx + width * spec.speed * t / spec.fps) % width
            elif spec.motion == "shake":
                cx, cy = cx + shake[t, i, 0], cy + shake[t, i, 1]
            elif spec.motion == "wave":
                cx, cy = cx + amplitude * math.sin(cycle), cy + 0.5 * amplitude * math.sin(2 * cycle)
            elif spec.motion == "spin":
                angle = cycle
            elif spec.motion == "pulse":
                scale = 1.3 if math.sin(cycle) > 0 else 0.8
            _stamp(frame, spec.shape, cx - px, cy - py, radius[i] * scale, angle, colours[i])
        region = frame[overlay_top:overlay_bottom]
        region[overlay_mask] = overlay_pixels[overlay_mask]
        frame += noise[t % 3]
    return out
