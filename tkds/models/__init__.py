"""Encoders, losses, self-supervised methods, presets, the training loop and embeddings.

    result = train(shards, out, "av-simclr", "cpu-tiny", seed=0)    # resumable; reused once finished
    table = embed(result.checkpoint, shards, "test", clips=4)       # L2-normalised backbone features

Methods (`tkds/models/methods/`, one file each). Video augmentation (clip-consistent crop, flip, colour
jitter, grayscale, temporal jitter) is the loader's, on two views; audio augmentation on log-mel (gain,
noise, SpecAugment masks) is `augment.py`'s, on the training device.

| method       | modality     | loss                                          | trains audio encoder |
|--------------|--------------|-----------------------------------------------|----------------------|
| `random`     | audio-visual | none: seeded untrained encoders, the floor    | no                   |
| `simclr`     | video        | NT-Xent between two video views               | no                   |
| `av-simclr`  | audio-visual | NT-Xent + symmetric video↔audio InfoNCE       | yes (needs audio)    |
| `moco`       | video        | MoCo v2: momentum key encoder, queue of keys  | no                   |
| `vicreg`     | video        | variance-invariance-covariance, no negatives  | no                   |
| `supervised` | video        | cross-entropy on `label`, −1 ignored: ceiling | no (needs labels)    |

Methods that do not train audio still embed it with their untrained audio encoder.

Presets (`presets.py`; `batch` is global, clips per step are 2 × batch). Step time is the full training
step of av-simclr on in-memory tensors (`benchmarks/train.py`) on 2 vCPUs (Xeon 2.5 GHz); with the
cores shared with other work it varied up to 4×.

| preset      | video / audio backbone     | clip            | batch | epochs | optimizer      | step       |
|-------------|----------------------------|-----------------|-------|--------|----------------|------------|
| `cpu-tiny`  | cnn3d-tiny / cnn2d-tiny    | 8×64², 1 s      | 32    | 5      | AdamW 1e-3     | 0.3 s      |
| `cpu-small` | cnn3d-small / cnn2d-small  | 8×96², 2 s      | 32    | 30     | AdamW 1e-3     | 2 s        |
| `gpu-small` | r2plus1d_18 / resnet18     | 16×112², 2 s    | 64    | 30     | AdamW 5e-4     | GPU only   |
| `gpu-full`  | r2plus1d_18 / resnet18     | 16×112², 2 s    | 256   | 100    | LARS 0.3       | GPU only   |

cpu-tiny takes minutes for ~200 training videos; cpu-small about an hour for ~1,000.
"""

from __future__ import annotations

from tkds.models.checkpoint import load_method
from tkds.models.embed import Embeddings, embed, embed_batches
from tkds.models.methods import METHODS, Method, build_method
from tkds.models.presets import PRESETS, Preset, get_preset
from tkds.models.train import TrainResult, fit, train

__all__ = [
    "METHODS",
    "PRESETS",
    "Embeddings",
    "Method",
    "Preset",
    "TrainResult",
    "build_method",
    "embed",
    "embed_batches",
    "fit",
    "get_preset",
    "load_method",
    "train",
]
