"""Training speed against its limit: the same training loop fed from tensors already on the device.

Both are measured in this run, on this machine, through `tkds.models.train.fit`, so the only
difference is where batches come from:
  synthetic  one batch already on the device, replayed: forward, backward and optimizer step only
  shards     `tkds.models.train` on the train split of --shards: decode, augment, DataLoader workers
Prints clips/s (median over steps after warm-up) and shards / synthetic (aim: at least 0.8 on GPU).
Presets default to those that fit the device: cpu-tiny on CPU, gpu-small and gpu-full on CUDA.

    python benchmarks/train.py [--method av-simclr] [--steps 12] [--presets cpu-tiny] [--shards DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

import torch

from tkds.models.presets import Preset, get_preset
from tkds.models.synthetic import synthetic_clips, synthetic_epoch
from tkds.models.train import fit, train

WARMUP_STEPS = 3  # first steps pay for cuDNN autotuning, torch.compile and DataLoader start-up


def median_rate(log: Path) -> tuple[float, float]:
    """Median clips/s and data-wait share over the logged steps after warm-up."""
    records = [json.loads(line) for line in log.read_text().splitlines()][WARMUP_STEPS:]
    return (
        statistics.median(r["clips_per_s"] for r in records),
        statistics.median(r["data_wait_share"] for r in records),
    )


def synthetic_rate(method: str, preset: Preset, steps: int, device: str, out: Path) -> float:
    batch = next(synthetic_epoch(synthetic_clips(preset, preset.batch_size), preset.batch_size, 0))
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    config = {"num_classes": 4} if method == "supervised" else {}
    fit(
        method,
        preset,
        lambda epoch: itertools.repeat(batch, steps),
        steps,
        out,
        device=device,
        max_steps=steps,
        progress=False,
        method_config=config,
    )
    return median_rate(out / "train.jsonl")[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--method", default="av-simclr")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--presets", help="comma-separated; default: those that fit the device")
    parser.add_argument("--shards", type=Path, help="shards to feed the same loop from, for the ratio")
    parser.add_argument("--workers", type=int, help="DataLoader workers for --shards (default: cores - 1)")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    names = args.presets.split(",") if args.presets else (["gpu-small", "gpu-full"] if cuda else ["cpu-tiny"])
    steps = max(args.steps, WARMUP_STEPS + 2)

    machine = torch.cuda.get_device_name() if cuda else f"{platform.processor() or platform.machine()} CPU"
    print(f"{machine}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"method {args.method}, {steps} steps, median after {WARMUP_STEPS} warm-up steps")
    header = f"{'preset':<10} {'batch':>5} {'synthetic clips/s':>18} {'s/step':>7}"
    if args.shards:
        header += f" {'shards clips/s':>15} {'data wait':>9} {'ratio (aim >= 0.8)':>18}"
    print(header)
    for name in names:
        preset = get_preset(name)
        with tempfile.TemporaryDirectory() as tmp:
            rate = synthetic_rate(args.method, preset, steps, device, Path(tmp) / "synthetic")
            line = f"{name:<10} {preset.batch_size:>5} {rate:>18.1f} {2 * preset.batch_size / rate:>7.2f}"
            if args.shards:
                result = train(
                    args.shards,
                    Path(tmp) / "shards",
                    args.method,
                    preset,
                    device=device,
                    num_workers=args.workers,
                    progress=False,
                    max_steps=steps,
                )
                fed, wait = median_rate(result.log)
                line += f" {fed:>15.1f} {wait:>9.0%} {fed / rate:>18.2f}"
        print(line)


if __name__ == "__main__":
    main()
