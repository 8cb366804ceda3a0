"""The training loop, checkpoints and embeddings, on in-memory synthetic clips in the loader's format."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import socket
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import tkds
from tkds.errors import TkdsError
from tkds.models.checkpoint import load_checkpoint, load_method
from tkds.models.embed import embed
from tkds.models.methods import build_method
from tkds.models.synthetic import SyntheticClips, stack_samples, synthetic_clips, synthetic_epoch
from tkds.models.train import TrainResult, fit, train

from .test_models_methods import TINY, one_thread  # noqa: F401 (an autouse fixture)

RUN = dataclasses.replace(TINY, epochs=2, checkpoint_every=3, warmup_epochs=0.5)
SAMPLES, STEPS_PER_EPOCH = 24, 3  # 24 clips in batches of 8


def batches(audio_share: float = 1.0, samples: int = SAMPLES):
    dataset = synthetic_clips(RUN, samples, audio_share=audio_share)
    return lambda epoch: synthetic_epoch(dataset, RUN.batch_size, epoch)


def run(method: str, out: Path, epoch_batches=None, **options) -> TrainResult:
    config = {"num_classes": 4} if method == "supervised" else {}
    return fit(
        method,
        options.pop("preset", RUN),
        epoch_batches or batches(),
        STEPS_PER_EPOCH,
        out,
        progress=False,
        method_config=config,
        **options,
    )


def log_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]


def killed_at(epoch_batches, step: int):
    """The same batches, but the run dies when it fetches its `step`-th batch (1-based, all epochs)."""
    fetched = 0

    def wrapped(epoch: int) -> Iterator[dict]:
        nonlocal fetched
        for batch in epoch_batches(epoch):
            fetched += 1
            if fetched == step:
                raise KeyboardInterrupt
            yield batch

    return wrapped


@pytest.mark.parametrize("method", ["av-simclr", "moco"])
def test_a_killed_run_resumes_to_the_same_loss_curve(method: str, tmp_path: Path) -> None:
    whole = run(method, tmp_path / "whole")
    assert whole.finished and whole.step == 6 and not whole.reused
    expected = [r["loss"] for r in log_of(tmp_path / "whole")]

    with pytest.raises(KeyboardInterrupt):
        run(method, tmp_path / "killed", killed_at(batches(), 5))  # checkpoint at 3, log reaches 4
    assert load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["step"] == 3
    resumed = run(method, tmp_path / "killed")
    assert resumed.finished and not resumed.reused
    got = log_of(tmp_path / "killed")
    assert [r["step"] for r in got] == list(range(1, 7))
    assert [r["loss"] for r in got] == pytest.approx(expected, abs=1e-6)


def test_short_epochs_end_early_and_still_resume_exactly(tmp_path: Path) -> None:
    # 20 clips give 2 batches of 8 where the caller promised 3, as workers dropping partial batches do.
    short = batches(samples=20)
    whole = run("simclr", tmp_path / "whole", short)
    assert whole.finished and whole.step == 4
    records = log_of(tmp_path / "whole")
    assert [(r["step"], r["epoch"]) for r in records] == [(1, 0), (2, 0), (3, 1), (4, 1)]
    with pytest.raises(KeyboardInterrupt):
        run("simclr", tmp_path / "killed", killed_at(short, 4))  # checkpoint at step 3
    run("simclr", tmp_path / "killed", short)
    assert [r["loss"] for r in log_of(tmp_path / "killed")] == pytest.approx(
        [r["loss"] for r in records], abs=1e-6
    )


def test_an_epoch_without_batches_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TkdsError, match="epoch 0 gave no batch of 8"):
        run("simclr", tmp_path, batches(samples=5))


def test_log_records_every_step(tmp_path: Path) -> None:
    run("av-simclr", tmp_path)
    records = log_of(tmp_path)
    assert [(r["step"], r["epoch"]) for r in records] == [(1, 0), (2, 0), (3, 0), (4, 1), (5, 1), (6, 1)]
    for record in records:
        assert {"loss", "lr", "clips_per_s", "data_wait_share", "visual", "cross"} <= set(record)
        assert record["clips_per_s"] > 0 and 0 <= record["data_wait_share"] <= 1
    lrs = [r["lr"] for r in records]
    assert lrs[0] < lrs[1] and lrs[1] == pytest.approx(RUN.lr, rel=1e-6) and lrs[-1] < lrs[2]


def test_a_finished_run_is_reused_not_retrained(tmp_path: Path) -> None:
    first = run("simclr", tmp_path)

    def no_data(epoch: int) -> list:
        raise AssertionError("a finished run must not read data")

    again = run("simclr", tmp_path, no_data)
    assert again.reused and again.finished and again.last_loss == first.last_loss
    assert len(log_of(tmp_path)) == 6


def test_max_steps_stops_early_and_the_run_continues_later(tmp_path: Path) -> None:
    partial = run("vicreg", tmp_path, max_steps=2)
    assert partial.step == 2 and not partial.finished
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2
    assert run("vicreg", tmp_path).finished


def test_a_checkpoint_from_another_config_is_refused(tmp_path: Path) -> None:
    run("simclr", tmp_path, max_steps=1)
    with pytest.raises(TkdsError, match=r"method simclr \(this run: vicreg\)"):
        run("vicreg", tmp_path)
    with pytest.raises(TkdsError, match="hash"):
        run("simclr", tmp_path, preset=dataclasses.replace(RUN, lr=0.5))
    with pytest.raises(TkdsError, match=r"seed 0 \(this run: 1\)"):
        run("simclr", tmp_path, seed=1)


def test_nan_loss_stops_the_run_naming_the_step_and_checkpoint(tmp_path: Path) -> None:
    clean = batches()

    def poisoned(epoch: int) -> Iterator[dict]:
        for i, batch in enumerate(clean(epoch)):
            if epoch == 1 and i == 1:
                batch["video"][:] = float("nan")
            yield batch

    with pytest.raises(TkdsError, match=r"loss is nan at step 5.*checkpoint\.pt at step 3"):
        run("simclr", tmp_path, poisoned)


def test_random_writes_a_checkpoint_without_training(tmp_path: Path) -> None:
    result = run("random", tmp_path, lambda epoch: [])
    assert result.finished and result.step == 0 and result.total_steps == 0
    method = load_method(result.checkpoint)
    torch.manual_seed(0)
    fresh = build_method("random", RUN)
    assert all(
        torch.equal(a, b)
        for a, b in zip(method.state_dict().values(), fresh.state_dict().values(), strict=True)
    )
    assert run("random", tmp_path, lambda epoch: []).reused


def test_av_simclr_refuses_shards_without_audio_and_simclr_still_trains(tmp_path: Path) -> None:
    with pytest.raises(TkdsError, match=r"has no audio.*av-simclr needs it; use simclr"):
        run("av-simclr", tmp_path / "av", batches(audio_share=0.0))
    assert run("simclr", tmp_path / "v", batches(audio_share=0.0)).finished


def test_supervised_refuses_shards_without_labels(tmp_path: Path) -> None:
    clean = batches()

    def unlabelled(epoch: int) -> Iterator[dict]:
        for batch in clean(epoch):
            yield {**batch, "label": torch.full_like(batch["label"], -1)}

    with pytest.raises(TkdsError, match="has no label"):
        run("supervised", tmp_path, unlabelled)


def fake_loader(monkeypatch: pytest.MonkeyPatch, audio_share: float = 0.5) -> None:
    """Put SyntheticClips where the real loader will be: tkds.load_shards and tkds.dataset.loader."""

    def load_shards(path, split, frames, size, audio_seconds, sample_rate, n_mels, views, shuffle, seed):
        rank, world = (
            (torch.distributed.get_rank(), torch.distributed.get_world_size())
            if torch.distributed.is_initialized()
            else (0, 1)
        )
        return SyntheticClips(
            SAMPLES,
            frames,
            size,
            audio_seconds,
            n_mels,
            views,
            sample_rate,
            audio_share=audio_share,
            seed=seed,
            rank=rank,
            world_size=world,
        )

    def load_eval_clips(path, split, clips, frames, size, audio_seconds, sample_rate, n_mels):
        return SyntheticClips(
            10, frames, size, audio_seconds, n_mels, clips, audio_share=audio_share, augment=False
        )

    module = types.ModuleType("tkds.dataset.loader")
    module.collate, module.load_eval_clips = stack_samples, load_eval_clips
    monkeypatch.setitem(sys.modules, "tkds.dataset.loader", module)
    monkeypatch.setattr(tkds, "load_shards", load_shards, raising=False)


def test_train_reads_the_loader_and_embed_gives_normalised_clip_means(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_loader(monkeypatch)
    result = train(
        tmp_path / "shards", tmp_path / "run", "av-simclr", RUN, device="cpu", num_workers=0, progress=False
    )
    assert result.finished and result.step == 6 and result.config_hash == RUN.config_hash()

    table = embed(
        result.checkpoint, tmp_path / "shards", "test", clips=3, device="cpu", num_workers=0, progress=False
    )
    assert len(table.keys) == 10 and [m["index"] for m in table.meta] == list(range(10))
    assert table.video.shape == (10, 128) and table.audio.shape == (10, 128)
    assert table.method == "av-simclr" and table.modality == "audio-visual" and table.learns_audio
    np.testing.assert_allclose(np.linalg.norm(table.video, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(table.audio[table.has_audio], axis=1), 1, atol=1e-5)
    assert not table.audio[~table.has_audio].any() and 0 < table.has_audio.sum() < 10

    method = load_method(result.checkpoint)
    clips = SyntheticClips(10, RUN.frames, RUN.size, RUN.audio_seconds, RUN.n_mels, 3, augment=False)
    with torch.no_grad():
        first = method.embed_video(clips.sample(0)["video"]).mean(0)
    np.testing.assert_allclose(table.video[0], (first / first.norm()).numpy(), atol=1e-5)


def test_train_sizes_the_supervised_head_from_the_manifest_classes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_loader(monkeypatch)
    result = train(
        tmp_path,
        tmp_path / "run",
        "supervised",
        RUN,
        device="cpu",
        num_workers=0,
        progress=False,
        max_steps=1,
    )
    assert result.step == 1 and load_checkpoint(result.checkpoint)["method_config"] == {"num_classes": 4}


def _ddp_rank(rank: int, world: int, port: int, out: Path) -> None:
    os.environ.update(
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    monkeypatch = pytest.MonkeyPatch()
    fake_loader(monkeypatch)
    loop = importlib.import_module("tkds.models.train")  # the module; tkds.models.train is the function
    built = []
    monkeypatch.setattr(
        loop, "build_method", lambda *a, **k: built.append(build_method(*a, **k)) or built[-1]
    )
    train(
        out / "shards",
        out / "run",
        "av-simclr",
        RUN,
        device="cpu",
        num_workers=0,
        progress=False,
        max_steps=2,
    )
    torch.save(dict(built[0].named_parameters()), out / f"rank{rank}.pt")


@pytest.mark.slow
def test_ddp_ranks_agree_after_training(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_rank, args=(2, port, tmp_path), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert saved["step"] == 2 and saved["world_size"] == 2 and len(saved["rng"]) == 2
    torch.manual_seed(0)
    fresh = build_method("av-simclr", RUN).state_dict()
    for name, value in ranks[0].items():
        assert torch.equal(value, ranks[1][name]), name
        assert torch.equal(value, saved["model"][name]), name
    assert not torch.equal(ranks[0]["video_encoder.net.0.weight"], fresh["video_encoder.net.0.weight"])
