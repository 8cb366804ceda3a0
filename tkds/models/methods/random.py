"""`random`: untrained encoders, the floor every method must beat.

Augmentations: none, it never trains. Both encoders keep their seeded initialisation, so its video
and audio embeddings are the floor for both modalities. Training writes a checkpoint and nothing else.
"""

from __future__ import annotations

from tkds.models.methods.base import Method


class RandomInit(Method):
    name = "random"
    modality = "audio-visual"
    trainable = False
