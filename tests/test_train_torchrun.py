"""`torchrun --nnodes 2 --nproc-per-node 1` (gloo, two local nodes, c10d rendezvous) trains a cpu-tiny run.

Its losses equal those of one process with the same global batch (to 1e-5), and after one node is
killed, relaunching both nodes resumes from the last checkpoint and ends with the same losses.
The training runs in this file's `__main__`, which both torchrun nodes and the single process start.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = 64  # two global batches of 32 per epoch
KILL_AT_EPOCH = "KILL_NODE_AT_EPOCH"  # rank 1 kills its whole node as it starts this epoch


def preset():
    from tkds.models.presets import PRESETS

    # cpu-tiny's networks, clips and batch; 3 epochs of 2 steps, a checkpoint every 2 steps.
    return dataclasses.replace(PRESETS["cpu-tiny"], epochs=3, checkpoint_every=2)


def train_on_synthetic_clips(out: Path) -> None:
    """Train simclr on in-memory clips, put where the loader would be; rank and world from torch."""
    import torch
    import torch.distributed as dist

    import tkds
    from tkds.models.synthetic import SyntheticClips, stack_samples
    from tkds.models.train import train

    torch.set_num_threads(1)
    # float64: in float32, the order of sums alone (one process with its batch reordered as the ranks
    # hold it) moves the loss by 1e-4 at step 2 and 2e-2 at step 6, AdamW's early steps amplifying it.
    torch.set_default_dtype(torch.float64)
    kill_at = int(os.environ.get(KILL_AT_EPOCH, "-1"))

    class Clips(SyntheticClips):
        def __iter__(self):
            if self.rank == 1 and int(self._epoch) == kill_at:
                os.kill(os.getppid(), signal.SIGKILL)  # the node's torchrun agent, then its worker
                os.kill(os.getpid(), signal.SIGKILL)
            yield from super().__iter__()

    def load_shards(path, split, frames, size, audio_seconds, sample_rate, n_mels, views, shuffle, seed):
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        return Clips(
            SAMPLES,
            frames,
            size,
            audio_seconds,
            n_mels,
            views,
            sample_rate,
            seed=seed,
            rank=rank,
            world_size=world,
        )

    loader = types.ModuleType("tkds.dataset.loader")
    loader.collate = stack_samples
    sys.modules["tkds.dataset.loader"] = loader
    tkds.load_shards = load_shards
    train(out / "shards", out / "run", "simclr", preset(), device="cpu", num_workers=0, progress=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}


def single_process(out: Path) -> None:
    subprocess.run([sys.executable, __file__, str(out)], env=environment(), check=True, timeout=300)


def two_nodes(out: Path, **extra: str) -> list[int]:
    """Start two torchrun nodes on this machine; their exit codes."""
    port = free_port()
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--node-rank",
                str(node),
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                f"127.0.0.1:{port}",
                "--rdzv-id",
                out.name,
                "--max-restarts",
                "0",
                __file__,
                str(out),
            ],
            env=environment(**extra),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
        )
        for node in (0, 1)
    ]
    try:
        return [node.wait(timeout=300) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)


def losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "run" / "train.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_torchrun_nodes_match_one_process_and_resume_after_a_node_is_killed(tmp_path: Path) -> None:
    import numpy as np

    from tkds.models.checkpoint import load_checkpoint

    single_process(tmp_path / "single")
    expected = losses(tmp_path / "single")
    assert len(expected) == 6

    assert two_nodes(tmp_path / "ddp") == [0, 0]
    np.testing.assert_allclose(losses(tmp_path / "ddp"), expected, rtol=0, atol=1e-5)
    assert load_checkpoint(tmp_path / "ddp" / "run" / "checkpoint.pt")["world_size"] == 2

    # Epoch 2 starts at step 5, after the checkpoint of step 4.
    killed = two_nodes(tmp_path / "killed", **{KILL_AT_EPOCH: "2"})
    assert killed != [0, 0] and -signal.SIGKILL in killed
    assert load_checkpoint(tmp_path / "killed" / "run" / "checkpoint.pt")["step"] == 4
    assert two_nodes(tmp_path / "killed") == [0, 0]
    assert load_checkpoint(tmp_path / "killed" / "run" / "checkpoint.pt")["step"] == 6
    np.testing.assert_allclose(losses(tmp_path / "killed"), expected, rtol=0, atol=1e-5)


if __name__ == "__main__":
    train_on_synthetic_clips(Path(sys.argv[1]))
