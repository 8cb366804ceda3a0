"""Encoders, heads, audio augmentation, presets and every method's training step, on tiny tensors."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator

import pytest
import torch

from tkds.errors import TkdsError
from tkds.models.augment import augment_audio, mask_band, random_gain
from tkds.models.encoders import AUDIO_BACKBONES, VIDEO_BACKBONES, audio_encoder, video_encoder
from tkds.models.heads import mlp_head
from tkds.models.methods import METHODS, build_method
from tkds.models.optim import LARS, param_groups, warmup_cosine
from tkds.models.presets import PRESETS, get_preset
from tkds.models.synthetic import synthetic_clips, synthetic_epoch

TINY = dataclasses.replace(
    PRESETS["cpu-tiny"],
    name="test-tiny",
    frames=4,
    size=32,
    audio_seconds=0.4,
    n_mels=16,
    batch_size=8,
    proj_hidden_dim=32,
    proj_dim=16,
    queue_size=16,
)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: on 2 cores shared with other work, two threads wait at every op's barrier."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_batch(audio_share: float = 1.0, seed: int = 0) -> dict:
    return next(synthetic_epoch(synthetic_clips(TINY, 8, audio_share=audio_share, seed=seed), 8, 0))


def test_small_encoders_are_small_and_give_their_dim() -> None:
    video, audio = video_encoder("cnn3d-tiny"), audio_encoder("cnn2d-tiny")
    assert 100_000 <= sum(p.numel() for p in video.parameters()) <= 500_000
    assert video(torch.randn(2, 3, 8, 64, 64)).shape == (2, video.dim)
    assert audio(torch.randn(2, 1, 64, 100)).shape == (2, audio.dim)


@pytest.mark.parametrize("name", ["r2plus1d_18", "r3d_18"])
def test_torchvision_video_backbones_give_512(name: str) -> None:
    encoder = video_encoder(name).eval()
    with torch.no_grad():
        assert encoder(torch.randn(1, 3, 4, 32, 32)).shape == (1, 512) and encoder.dim == 512


def test_resnet18_audio_takes_one_channel() -> None:
    encoder = audio_encoder("resnet18").eval()
    with torch.no_grad():
        assert encoder(torch.randn(1, 1, 32, 50)).shape == (1, 512) and encoder.dim == 512


def test_unknown_backbone_lists_the_valid_ones() -> None:
    with pytest.raises(TkdsError, match="cnn3d-tiny"):
        video_encoder("vit-huge")
    assert {p.video_backbone for p in PRESETS.values()} <= set(VIDEO_BACKBONES)
    assert {p.audio_backbone for p in PRESETS.values()} <= set(AUDIO_BACKBONES)


def test_mlp_head_layers() -> None:
    head = mlp_head([8, 16, 4])
    assert [type(m).__name__ for m in head] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert len(mlp_head([8, 16, 16, 4])) == 7
    assert head(torch.randn(3, 8)).shape == (3, 4)


def test_random_gain_shifts_each_clip_by_one_constant() -> None:
    torch.manual_seed(0)
    mel = torch.randn(3, 2, 1, 8, 10)
    shift = random_gain(mel, 6.0) - mel
    per_clip = shift.flatten(2)
    assert torch.allclose(per_clip, per_clip[..., :1].expand_as(per_clip))
    assert per_clip.abs().max() <= 6.0 * 0.2303


def test_mask_band_fills_whole_bands_with_the_clip_mean() -> None:
    torch.manual_seed(0)
    mel = torch.arange(2 * 1 * 4 * 20, dtype=torch.float32).view(2, 1, 4, 20)
    masked = mask_band(mel, -1, max_width=5, masks=1)
    for clip in range(2):
        changed = (masked[clip] != mel[clip]).any(dim=(0, 1)).nonzero().flatten()
        assert len(changed) <= 5
        if len(changed):
            assert changed.tolist() == list(range(int(changed[0]), int(changed[-1]) + 1))
            assert torch.allclose(masked[clip][..., changed], mel[clip].mean().expand(1, 4, len(changed)))
    freq = mask_band(mel, -2, max_width=4, masks=3)
    assert ((freq != mel).any(dim=-1) | (freq == mel).all(dim=-1)).all()


def test_augment_audio_is_reproducible_from_the_global_seed() -> None:
    mel = torch.randn(4, 2, 1, 16, 40)
    torch.manual_seed(5)
    first = augment_audio(mel)
    torch.manual_seed(5)
    assert torch.equal(first, augment_audio(mel)) and first.shape == mel.shape


def test_preset_hash_is_stable_and_sensitive() -> None:
    tiny = get_preset("cpu-tiny")
    assert tiny.config_hash() == dataclasses.replace(tiny).config_hash()
    assert len(tiny.config_hash()) == 12
    assert tiny.config_hash() != dataclasses.replace(tiny, lr=tiny.lr * 2).config_hash()
    assert len({p.config_hash() for p in PRESETS.values()}) == len(PRESETS)


def test_unknown_preset_and_method_list_the_valid_names() -> None:
    with pytest.raises(TkdsError, match="cpu-tiny, cpu-small, gpu-small, gpu-full"):
        get_preset("cpu-huge")
    with pytest.raises(TkdsError, match="random, simclr, av-simclr, moco, vicreg, supervised"):
        build_method("dino", TINY)


def _build(name: str):
    torch.manual_seed(0)
    return build_method(name, TINY, **({"num_classes": 4} if name == "supervised" else {}))


@pytest.mark.parametrize("name", [name for name in METHODS if name != "random"])
def test_training_step_gives_a_finite_loss_and_gradients(name: str) -> None:
    method = _build(name)
    loss, parts = method.training_step(tiny_batch())
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.video_encoder.parameters())
    audio_grads = [p.grad is not None and p.grad.abs().sum() > 0 for p in method.audio_encoder.parameters()]
    assert any(audio_grads) == method.learns_audio
    assert all(torch.isfinite(v) for v in parts.values())


@pytest.mark.parametrize("name", list(METHODS))
def test_embeddings_are_backbone_features_for_both_modalities(name: str) -> None:
    method, batch = _build(name).eval(), tiny_batch()
    assert method.modality in {"video", "audio-visual"}
    with torch.no_grad():
        assert method.embed_video(batch["video"][:, 0]).shape == (8, method.video_encoder.dim)
        assert method.embed_audio(batch["audio"][:, 0]).shape == (8, method.audio_encoder.dim)


def test_av_simclr_leaves_clips_without_audio_out_of_the_cross_modal_term() -> None:
    method, batch = _build("av-simclr"), tiny_batch(audio_share=0.5, seed=3)
    assert 2 <= int(batch["has_audio"].sum()) < 8
    audio = batch["audio"].clone().requires_grad_(True)
    loss, _ = method.training_step({**batch, "audio": audio})
    loss.backward()
    grad_per_clip = audio.grad.abs().flatten(1).sum(1)
    assert (grad_per_clip[~batch["has_audio"]] == 0).all() and (grad_per_clip[batch["has_audio"]] > 0).all()


def test_av_simclr_without_any_audio_learns_only_the_visual_pair() -> None:
    method = _build("av-simclr")
    loss, parts = method.training_step(tiny_batch(audio_share=0.0))
    loss.backward()
    assert float(parts["cross"]) == 0 and float(loss.detach()) == pytest.approx(float(parts["visual"]))
    assert all(p.grad is not None and not p.grad.any() for p in method.audio_encoder.parameters())


def test_moco_enqueues_keys_and_moves_its_key_encoder_by_momentum() -> None:
    method = _build("moco")
    queue, key_before = method.queue.clone(), [p.clone() for p in method.key_encoder.parameters()]
    loss, _ = method.training_step(tiny_batch())
    assert int(method.queue_next) == 8 and not torch.equal(method.queue[:8], queue[:8])
    assert torch.equal(method.queue[8:], queue[8:])
    loss.backward()
    torch.optim.SGD(method.parameters(), lr=1.0).step()
    method.after_step()
    m = TINY.momentum
    for before, online, after in zip(
        key_before, method.video_encoder.parameters(), method.key_encoder.parameters(), strict=True
    ):
        assert torch.allclose(after, m * before + (1 - m) * online, atol=1e-6)
    assert not any(p.requires_grad for p in method.key_encoder.parameters())


def test_supervised_ignores_unknown_labels_and_needs_num_classes() -> None:
    method, batch = _build("supervised"), tiny_batch()
    unknown = {**batch, "label": torch.full_like(batch["label"], -1)}
    assert float(method.training_step(unknown)[0].detach()) == 0
    assert float(method.training_step(batch)[0].detach()) > 0
    with pytest.raises(TkdsError, match="num_classes"):
        build_method("supervised", TINY)


def test_lars_step_follows_its_formula() -> None:
    w, b = torch.tensor([[3.0, 4.0]], requires_grad=True), torch.tensor([1.0], requires_grad=True)
    w.grad, b.grad = torch.tensor([[0.5, -1.0]]), torch.tensor([2.0])
    groups = [
        {"params": [w], "weight_decay": 0.1, "lars": True},
        {"params": [b], "weight_decay": 0.0, "lars": False},
    ]
    LARS(groups, lr=0.5, eta=0.01).step()
    g = torch.tensor([[0.5, -1.0]]) + 0.1 * torch.tensor([[3.0, 4.0]])
    expected = torch.tensor([[3.0, 4.0]]) - 0.5 * g * 0.01 * 5.0 / g.norm()
    assert torch.allclose(w.detach(), expected) and torch.allclose(b.detach(), torch.tensor([0.0]))


def test_warmup_then_cosine_to_zero() -> None:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = warmup_cosine(optimizer, warmup_steps=4, total_steps=12)
    lrs = []
    for _ in range(12):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0) and all(a > b for a, b in itertools.pairwise(lrs[4:]))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_norms_and_biases_skip_weight_decay() -> None:
    decay, no_decay = param_groups(mlp_head([4, 8, 2]), weight_decay=0.1)
    assert all(p.ndim == 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert no_decay["weight_decay"] == 0 and not no_decay["lars"]
