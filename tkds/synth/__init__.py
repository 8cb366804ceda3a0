"""SynthTok: a procedural TikTok-shaped corpus with known generative factors and known ceilings."""

from tkds.synth.factors import SynthConfig, build_world, draw_videos
from tkds.synth.generate import CORPUS_FILE, SynthSummary, generate

__all__ = ["CORPUS_FILE", "SynthConfig", "SynthSummary", "build_world", "draw_videos", "generate"]
