"""`av-simclr`: SimCLR's visual pair plus video↔audio InfoNCE, learning both encoders together.

The thesis's multimodal SimCLR, with AVID's symmetric cross-modal term: each video view is paired with
the audio crop of the same view. Loss = NT-Xent(video view 1, video view 2) + mean over views of
InfoNCE(video, audio).

Augmentations: video as in simclr; audio gets the loader's random crop, then gain, noise and
SpecAugment time/frequency masks (`tkds.models.augment.augment_audio`). Samples without audio take part
in the visual term only: they skip the audio encoder, and the cross-modal term is computed over the
samples that have audio, in the global batch.
"""

from __future__ import annotations

import torch

from tkds.models.augment import augment_audio
from tkds.models.heads import mlp_head
from tkds.models.losses import info_nce, nt_xent
from tkds.models.methods.base import Batch, Method, encode_views, gather
from tkds.models.presets import Preset


class AVSimCLR(Method):
    name = "av-simclr"
    modality = "audio-visual"
    learns_audio = True
    needs = "audio"
    fallback = "simclr (or another visual method)"

    def __init__(self, preset: Preset) -> None:
        super().__init__(preset)
        self.video_projector = mlp_head([self.video_encoder.dim, preset.proj_hidden_dim, preset.proj_dim])
        self.audio_projector = mlp_head([self.audio_encoder.dim, preset.proj_hidden_dim, preset.proj_dim])

    def training_step(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        tau, audio, has_audio = self.preset.temperature, batch["audio"][:, :2], batch["has_audio"]
        zv = encode_views(self.video_encoder, self.video_projector, batch["video"][:, :2])
        if int(has_audio.sum()) >= 2:
            # Only clips with audio enter the audio encoder, so silent ones do not shift its BN statistics.
            found = encode_views(self.audio_encoder, self.audio_projector, augment_audio(audio[has_audio]))
            za = found.new_zeros(zv.shape).index_put((has_audio.nonzero()[:, 0],), found)
        else:
            # Nothing to pair on this rank; the audio branch still runs, at weight 0, because DDP needs
            # every parameter in every rank's graph.
            za = encode_views(self.audio_encoder, self.audio_projector, augment_audio(audio)) * 0
            has_audio = torch.zeros_like(has_audio)
        zv, za, has_audio = gather(zv), gather(za), gather(has_audio.to(torch.uint8)).bool()
        visual = nt_xent(zv[:, 0], zv[:, 1], tau)
        if int(has_audio.sum()) >= 2:
            zv, za = zv[has_audio], za[has_audio]
            cross = (info_nce(zv[:, 0], za[:, 0], tau) + info_nce(zv[:, 1], za[:, 1], tau)) / 2
        else:
            cross = za.sum() * 0
        return visual + cross, {"visual": visual.detach(), "cross": cross.detach()}
