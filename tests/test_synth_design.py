"""SynthTok's designed-in fact: sound and pixels each carry category information the other lacks.

Simple hand-made features from the decoded media, a linear classifier, and cross-validation: the
audio-visual features must beat either modality alone, as the thesis found on real TikTok.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torchcodec.decoders import AudioDecoder, VideoDecoder

from tkds.synth import generate


def visual_features(path: Path) -> np.ndarray:
    decoder = VideoDecoder(str(path), seek_mode="approximate")
    frames = decoder.get_frames_at(np.linspace(0, len(decoder) - 1, 8).astype(int).tolist()).data
    rgb = frames.permute(0, 2, 3, 1).reshape(-1, 3).float()
    bins = (rgb // 64).long()
    colour = torch.bincount(bins[:, 0] * 16 + bins[:, 1] * 4 + bins[:, 2], minlength=64).float()
    motion = (frames[1:].float() - frames[:-1].float()).abs().mean(dim=(1, 2, 3))
    return np.concatenate([colour / colour.sum(), [motion.mean().item(), motion.std().item()]])


def audio_features(path: Path) -> np.ndarray:
    samples = AudioDecoder(str(path), sample_rate=16000).get_all_samples().data[0]
    frames = samples[: samples.numel() // 512 * 512].reshape(-1, 512)
    power = torch.fft.rfft(frames * torch.hann_window(512), dim=1).abs() ** 2
    edges = np.unique(np.geomspace(1, 256, 33).astype(int))
    bands = torch.stack([power[:, lo:hi].mean(dim=1) for lo, hi in itertools.pairwise(edges)], 1)
    log_bands = torch.log(bands + 1e-8)
    onset = torch.relu(log_bands[1:] - log_bands[:-1]).sum(dim=1)
    onset = onset - onset.mean()
    tempo = torch.stack([(onset[lag:] * onset[:-lag]).mean() for lag in range(4, 24)])
    return np.concatenate(
        [log_bands.mean(0).numpy(), log_bands.std(0).numpy(), (tempo / onset.var()).numpy()]
    )


@pytest.mark.slow
def test_audio_and_pixels_each_add_category_information(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    generate(out, 240, seed=1, seconds=(2.0, 3.0), progress=False)
    videos = json.loads((out / "corpus.json").read_text())["videos"]
    paths = [out / "media" / f"{v['id']}.mp4" for v in videos]
    labels = np.array([v["category"] for v in videos])
    visual = np.stack([visual_features(p) for p in paths])
    audio = np.stack([audio_features(p) for p in paths])

    def accuracy(features: np.ndarray) -> float:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=3000))
        return float(cross_val_score(model, features, labels, cv=5).mean())

    v, a, av = accuracy(visual), accuracy(audio), accuracy(np.hstack([visual, audio]))
    print(f"category accuracy: visual {v:.3f}, audio {a:.3f}, audio-visual {av:.3f}")
    assert av > v + 0.05, (v, a, av)
    assert av > a + 0.05, (v, a, av)
    assert min(v, a) > 1.5 / 8  # both well above chance
