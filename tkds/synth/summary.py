"""What a finished SynthTok corpus holds, read back from its corpus.json."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from tkds.errors import TkdsError
from tkds.synth.generate import CORPUS_FILE


def load_corpus(out: str | Path) -> dict:
    path = Path(out) / CORPUS_FILE
    if not path.exists():
        raise TkdsError(f"{out} is not a finished SynthTok corpus (no {CORPUS_FILE}); run `tkds synth {out}`")
    return json.loads(path.read_text(encoding="utf-8"))


def corpus_stats(corpus: dict) -> dict:
    """Counts and spreads that show the corpus behaves like TikTok: skewed sounds and followers."""
    videos = corpus["videos"]
    sound_uses = Counter(v["sound_id"] for v in videos)
    per_category = Counter(v["category_name"] for v in videos)
    followers = np.array([a["followers"] for a in corpus["authors"]])
    uses = sorted(sound_uses.values(), reverse=True)
    return {
        "videos": len(videos),
        "authors": len(corpus["authors"]),
        "categories": dict(sorted(per_category.items())),
        "sounds_used": len(sound_uses),
        "original_sound_videos": sum(v["original_sound"] for v in videos),
        "top_sound_uses": uses[:5],
        "videos_on_reused_sounds": sum(n for n in uses if n > 1),
        "followers_median": int(np.median(followers)),
        "followers_log10_sd": round(float(np.std(np.log10(followers))), 3),
        "outliers": sum(v["is_outlier"] for v in videos),
        "hashtags": len({t for v in videos for t in v["hashtags"]}),
        "bayes_r2": corpus["bayes_r2"],
    }
