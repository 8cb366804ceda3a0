"""The training loop: any iterable of batches in, a resumable checkpoint and a JSONL log out.

`fit` is the loop itself and takes batches from a function of the epoch, so tests feed it synthetic
data; `train` wires the loader into it. A run is a pure function of (method, preset, seed, data): a run
killed and resumed from its checkpoint logs the same losses as one left alone, because the checkpoint
holds every RNG state and the loop replays the current epoch's order, skipping the batches it has done.
Under `torchrun`, `train` joins the process group (gloo on CPU, nccl on CUDA) and wraps the method in DDP,
with BatchNorm over the global batch and batch-global losses over gathered embeddings, so that N ranks
log the losses of one process with the whole batch (to 1e-5, tested with two torchrun nodes).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from tkds import __version__
from tkds.console import progress_bar
from tkds.errors import TkdsError
from tkds.ids import preview
from tkds.models.checkpoint import CHECKPOINT, check_matches, load_checkpoint, save_checkpoint
from tkds.models.distributed import sync_batch_norm
from tkds.models.encoders import Encoder
from tkds.models.methods import Method, build_method, method_class
from tkds.models.optim import build_optimizer, warmup_cosine
from tkds.models.presets import Preset, get_preset

LOG = "train.jsonl"
DEVICE = re.compile(r"cpu|cuda(:[0-9]{1,2})?")
MAX_WORKERS = 256  # DataLoader worker processes


@dataclass(frozen=True)
class TrainResult:
    """Where a run's checkpoint and log are, and how far it got."""

    checkpoint: Path
    log: Path
    method: str
    preset: str
    config_hash: str
    seed: int
    step: int
    total_steps: int
    finished: bool
    reused: bool  # the run had finished: nothing trained
    resumed: bool  # it went on from a checkpoint
    train_seconds: float
    device: str
    last_loss: float | None


def train(
    shards: Path,
    out: Path,
    method: str,
    preset: str | Preset,
    seed: int = 0,
    device: str | None = None,
    num_workers: int | None = None,
    progress: bool = True,
    max_steps: int | None = None,
    num_classes: int | None = None,
) -> TrainResult:
    """Train `method` with `preset` on the train split of `shards`, into `out`.

    Resumes from `out/checkpoint.pt` when it exists, and returns at once when that run has finished.
    `max_steps` stops early (the checkpoint can be resumed later). `num_workers` defaults to all cores but
    one; `num_classes` (supervised only) defaults to the number of label classes in the manifest.
    """
    preset, cls = get_preset(preset), method_class(method)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise TkdsError(f"--seed {_shown(seed)}: use a whole number from 0 to {2**32 - 1}")
    if max_steps is not None and (
        isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1
    ):
        raise TkdsError(f"--max-steps {_shown(max_steps)}: use a whole number of at least 1")
    if device is not None:
        check_device(device)
    check_workers(num_workers)
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise TkdsError(f"num_classes {_shown(num_classes)}: use a whole number of classes, 1 or more")
    with _distributed(device) as (world, dev):
        if not cls.trainable:
            return fit(method, preset, lambda epoch: [], 0, out, seed=seed, device=dev, progress=progress)
        from tkds import load_shards
        from tkds.dataset.loader import collate

        if preset.batch_size % world:
            raise TkdsError(
                f"preset {preset.name}: batch {preset.batch_size} does not split over {world} ranks"
            )
        dataset = load_shards(
            shards,
            split="train",
            **preset.clip_options(),
            views=2,
            shuffle=True,
            seed=seed,
        )
        steps_per_epoch = dataset.num_samples // preset.batch_size
        if steps_per_epoch == 0:
            raise TkdsError(
                f"{shards}: the train split has {dataset.num_samples} videos, fewer than one batch of "
                f"{preset.batch_size} ({preset.name}); collect more videos or use a smaller preset"
            )
        if cls.needs == "label" and not (num_classes or dataset.label_names):
            raise TkdsError(
                f"{shards} list no label classes in their manifest; {method} needs labels; use {cls.fallback}"
            )
        workers = default_workers() if num_workers is None else num_workers
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=preset.batch_size // world,
            collate_fn=collate,
            num_workers=workers,
            persistent_workers=workers > 0,  # the loader's set_epoch reaches them through shared memory
            pin_memory=dev.type == "cuda",
            drop_last=True,
            prefetch_factor=4 if workers else None,
            # Its own generator: the global one would be drawn from at every epoch's start, and a resumed
            # run, starting mid-epoch, would then draw different augmentations from there on.
            generator=torch.Generator().manual_seed(seed),
        )

        def epoch_batches(epoch: int) -> Iterable[dict]:
            dataset.set_epoch(epoch)
            return loader

        config = {"num_classes": num_classes or len(dataset.label_names)} if cls.needs == "label" else {}
        with cpu_threads(dev, workers):
            return fit(
                method,
                preset,
                epoch_batches,
                steps_per_epoch,
                out,
                seed=seed,
                device=dev,
                max_steps=max_steps,
                progress=progress,
                source=str(shards),
                method_config=config,
            )


def _shown(value: object) -> str:
    """A whole number as it is; anything else as a short quoted prefix."""
    return str(value) if type(value) is int else preview(value)


def check_device(device: object) -> None:
    """Refuse a device that is not cpu, cuda or cuda:N, or a CUDA device that is not visible."""
    if not isinstance(device, str) or not DEVICE.fullmatch(device):
        shown = (
            device if isinstance(device, str) and re.fullmatch(r"[\w.:-]{1,40}", device) else preview(device)
        )
        raise TkdsError(f"--device {shown}: use cpu, cuda or cuda:N")
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            seen = f"only {count} CUDA device(s) are visible" if count else "no CUDA device is visible"
            raise TkdsError(f"--device {device}: {seen}; use --device cpu or another index")


@contextmanager
def cpu_threads(device: torch.device, workers: int) -> Iterator[None]:
    """On CPU, leave the DataLoader workers their cores, and restore the thread count afterwards.

    Intra-op threads that share a core with a decoding worker wait at every op's barrier: on 2 busy
    cores, that made the tiny test steps ten times slower.
    """
    if device.type != "cpu" or workers == 0:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(before, (os.cpu_count() or 1) - workers)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_workers(workers: object) -> None:
    """DataLoader workers: None (the default) or a whole number from 0 to MAX_WORKERS."""
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or not 0 <= workers <= MAX_WORKERS
    ):
        raise TkdsError(f"num_workers {_shown(workers)}: use a whole number from 0 to {MAX_WORKERS}")


def default_workers() -> int:
    """DataLoader workers: every core but one, which the training step keeps."""
    return max(1, (os.cpu_count() or 2) - 1)


@contextmanager
def _distributed(device: str | None) -> Iterator[tuple[int, torch.device]]:
    """(world size, device); joins the process group when started by torchrun, and leaves it."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if int(os.environ.get("WORLD_SIZE", "1")) == 1 or dist.is_initialized():
        yield (dist.get_world_size() if dist.is_initialized() else 1), dev
        return
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    try:
        yield dist.get_world_size(), dev
    finally:
        dist.destroy_process_group()


def fit(
    method: str,
    preset: Preset,
    epoch_batches: Callable[[int], Iterable[dict]],
    steps_per_epoch: int,
    out: Path,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    max_steps: int | None = None,
    progress: bool = True,
    source: str = "the data",
    method_config: dict | None = None,
) -> TrainResult:
    """The loop: `preset.epochs` epochs of at most `steps_per_epoch` batches from `epoch_batches(epoch)`.

    `epoch_batches` must give the same batches for the same epoch every time it is called, and each
    rank's own share under DDP (batches of preset.batch_size / world size). An epoch may end early, as
    an IterableDataset split over workers does when each drops its own last partial batch; under DDP,
    the epoch ends for every rank when one runs out. The schedule assumes full epochs.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    checkpoint_path, log_path = out / CHECKPOINT, out / LOG
    epochs = preset.epochs if method_class(method).trainable else 0
    total_steps = epochs * steps_per_epoch
    stop_step = total_steps if max_steps is None else min(total_steps, max_steps)

    torch.manual_seed(seed)
    model = build_method(method, preset, **(method_config or {})).to(device)
    if world > 1:
        sync_batch_norm(model, device)  # per-rank BN statistics would make N ranks differ from one
    optimizer = build_optimizer(model, preset.optimizer, preset.lr, preset.weight_decay)
    scheduler = warmup_cosine(optimizer, round(preset.warmup_epochs * steps_per_epoch), total_steps)
    state = {
        "step": 0,
        "epoch": 0,
        "epoch_step": 0,
        "needed_seen": 0,
        "train_seconds": 0.0,
        "last_loss": None,
    }
    resumed = checkpoint_path.exists()
    if resumed:
        checkpoint = load_checkpoint(checkpoint_path)
        check_matches(checkpoint, checkpoint_path, method, preset, seed, total_steps)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        state = {key: checkpoint[key] for key in state}
        if len(checkpoint["rng"]) == world:
            _set_rng_state(checkpoint["rng"][rank], device)
    elif rank:
        torch.manual_seed(seed * 1000 + rank)  # each rank draws its own augmentations
    saved = (state["step"], state["epoch"]) if resumed else None

    def stopped() -> bool:
        return state["epoch"] >= epochs or state["step"] >= stop_step

    def result(reused: bool) -> TrainResult:
        return TrainResult(
            checkpoint=checkpoint_path,
            log=log_path,
            method=method,
            preset=preset.name,
            config_hash=preset.config_hash(),
            seed=seed,
            step=state["step"],
            total_steps=total_steps,
            finished=state["epoch"] >= epochs,
            reused=reused,
            resumed=resumed,
            train_seconds=state["train_seconds"],
            device=str(device),
            last_loss=state["last_loss"],
        )

    def save() -> None:
        nonlocal saved
        rng = [_rng_state(device)]
        if world > 1:
            rng = [None] * world
            dist.all_gather_object(rng, _rng_state(device))
            # Only zero versus not matters (see _check_needed), so summing again later does no harm.
            state["needed_seen"] = int(_reduce(state["needed_seen"], world, device))
        saved = (state["step"], state["epoch"])
        if rank == 0:
            save_checkpoint(
                checkpoint_path,
                {
                    **state,
                    "method": method,
                    "method_config": model.config(),
                    "preset": preset.to_dict(),
                    "config_hash": preset.config_hash(),
                    "seed": seed,
                    "total_steps": total_steps,
                    "world_size": world,
                    "device": str(device),
                    "tkds_version": __version__,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": rng,
                },
            )

    def end_epoch() -> None:
        if state["epoch_step"] == 0:
            raise TkdsError(
                f"{source}: epoch {state['epoch']} gave no batch of {preset.batch_size // world}; "
                "check that the split has at least one batch of videos per rank and worker"
            )
        if state["epoch"] == 0 and model.needs:
            _check_needed(model, int(_reduce(state["needed_seen"], world, device)), source)
        state["epoch"] += 1
        state["epoch_step"] = 0

    if resumed and stopped():
        return result(reused=True)
    if rank == 0:
        _truncate_log(log_path, state["step"])
    model.use_channels_last()
    if device.type == "cuda" and preset.compile:
        for encoder in (m for m in model.modules() if isinstance(m, Encoder)):
            encoder.compile()
    step_fn = (
        DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            # The audio encoder of a visual method takes no part in the loss.
            find_unused_parameters=not model.learns_audio,
        )
        if world > 1
        else model
    )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    clips_per_step = preset.batch_size * 2
    session_start, seconds_before = time.perf_counter(), state["train_seconds"]

    with (
        progress_bar(f"train {method} ({preset.name})", stop_step, enabled=progress and rank == 0) as bar,
        open(log_path, "a") if rank == 0 else nullcontext() as log,
    ):
        bar.update(0, completed=state["step"])
        while not stopped():
            epoch = state["epoch"]
            batches = iter(itertools.islice(epoch_batches(epoch), state["epoch_step"], steps_per_epoch))
            while not stopped():
                tick = time.perf_counter()
                batch = next(batches, None)
                # Every rank stops the epoch when one runs out: DDP ranks must take the same steps.
                if not _reduce(batch is not None, world, device, dist.ReduceOp.MIN):
                    end_epoch()
                    break
                fetched = time.perf_counter()
                batch = _to_device(batch, device)
                if model.needs and epoch == 0:
                    state["needed_seen"] += _count_needed(batch, model.needs)
                with autocast:
                    loss, parts = step_fn(batch)
                loss_value = _reduce(loss.detach().float(), world, device) / world
                if not math.isfinite(loss_value):
                    raise TkdsError(
                        f"{method} ({preset.name}): loss is {loss_value} at step {state['step'] + 1}; "
                        f"stopped. Last checkpoint: {_describe(checkpoint_path, saved)}. "
                        "Lower the preset's lr, or check the data"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                lr = optimizer.param_groups[0]["lr"]
                optimizer.step()
                scheduler.step()
                model.after_step()
                state["step"] += 1
                state["epoch_step"] += 1
                state["last_loss"] = loss_value
                state["train_seconds"] = seconds_before + time.perf_counter() - session_start
                elapsed = time.perf_counter() - tick
                if rank == 0:
                    record = {
                        "step": state["step"],
                        "epoch": epoch,
                        "loss": loss_value,
                        "lr": lr,
                        "clips_per_s": clips_per_step / elapsed,
                        "data_wait_share": (fetched - tick) / elapsed,
                        **{name: float(value) for name, value in parts.items()},
                    }
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                bar.advance(0)
                full_epoch = state["epoch_step"] == steps_per_epoch
                if full_epoch:
                    end_epoch()
                if state["step"] % preset.checkpoint_every == 0:
                    save()
                if full_epoch:
                    break
        if state["epoch"] >= epochs:
            bar.update(0, total=state["step"], completed=state["step"])  # short epochs end below the estimate
    if saved != (state["step"], state["epoch"]):
        save()  # the end of the run, or of this call's max_steps; `random` saves its untrained encoders
    return result(reused=False)


def _to_device(batch: dict, device: torch.device) -> dict:
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
    }


def _count_needed(batch: dict, needs: str) -> int:
    present = batch["has_audio"] if needs == "audio" else batch["label"] >= 0
    return int(present.sum())


def _check_needed(model: Method, seen: int, source: str) -> None:
    """After the first epoch: refuse data with none of what the method needs (audio, labels)."""
    if seen == 0:
        raise TkdsError(
            f"{source} has no {model.needs}: no sample of the first epoch had it; "
            f"{model.name} needs it; use {model.fallback}"
        )


def _reduce(value: float, world: int, device: torch.device, op: dist.ReduceOp = dist.ReduceOp.SUM) -> float:
    """`value` reduced over DDP ranks (itself on one process), via the device, as nccl needs."""
    if world == 1:
        return float(value)
    tensor = torch.tensor(float(value), device=device)
    dist.all_reduce(tensor, op=op)
    return float(tensor)


def _describe(checkpoint: Path, saved: tuple[int, int] | None) -> str:
    return "none yet" if saved is None else f"{checkpoint} at step {saved[0]}"


def _rng_state(device: torch.device) -> dict:
    return {
        "cpu": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and state["cuda"] is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


def _truncate_log(path: Path, step: int) -> None:
    """Keep the log up to `step`: a killed run may have logged steps after its last checkpoint."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in kept))


if __name__ == "__main__":  # `python -m tkds.models.train ARGS` is `tkds train ARGS`
    import sys

    from tkds.cli import main

    main(["train", *sys.argv[1:]])
