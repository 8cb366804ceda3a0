"""The GPU path in one run: what tkds reaches from real shards, against the synthetic-tensor ceiling.

Sections, each in its own (forked) process with its own time budget: a CUDA error, a hang or an
out-of-memory kill costs that section alone; its failure is one line and the run goes on.
  synthetic_eager, synthetic_compiled  the av-simclr step on one batch already on the device
                                       (benchmarks/train.py), without and with torch.compile
  train_shards      `tkds.models.train.train` from the shards' train split for --steps steps, the
                    DataLoader at every core but one; ratio to the synthetic step of the same compile
                    setting (aim: at least 0.8)
  loader_<N>w       the training loader alone at 1, 8 and 15 workers (capped at the cores), samples/s
  embed, tasks      `embed` of every split with the train_shards checkpoint (`random` if none), test
                    split videos/s, then the bench tasks on those embeddings
Training sections also record peak GPU memory and the GPU's utilisation (nvidia-smi, sampled).
The train split is listed several times over (links to the same tars) so that every worker gets full
batches from the few shards a GPU call can carry. Results: OUT_DIR/gpu.json and OUT_DIR/gpu.md.

    python benchmarks/gpu.py OUT_DIR [--cpu] [--shards DIR] [--steps N] [--budget-s S]

--cpu runs the same sections with cpu-tiny and a few steps, for CI; on the GPU machine see
scripts/gpu-carry.sh, which prepares the shards, wheels and FFmpeg libraries, and prints the command.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import multiprocessing
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

STARTED = time.monotonic()  # the budget counts from here, imports included
REPO = Path(__file__).resolve().parent.parent
DEFAULT_SHARDS = REPO / ".gpu-carry" / "shards"
LOADER_WORKERS = (1, 8, 15)
# Share of the remaining time each section may take; what a section leaves goes to those after it.
# torch.compile of both encoders is the slow part: it comes first, train_shards then hits its cache.
SHARES = {"synthetic_eager": 1, "synthetic_compiled": 3, "train_shards": 3, "loader": 0.5, "embed": 1.5}
MARGIN_S = 5.0  # the parent's own work: starting sections, writing results
HEADLINES = {"videos_per_s": "videos/s", "samples_per_s": "samples/s", "videos_per_s_test": "test videos/s"}


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def section_names(cores: int) -> list[str]:
    loaders = sorted({min(n, cores) for n in LOADER_WORKERS})
    return [
        "synthetic_eager",
        "synthetic_compiled",
        "train_shards",
        *(f"loader_{n}w" for n in loaders),
        "embed",
    ]


def entry_names(cores: int) -> list[str]:
    """Every measurement gpu.json reports, in order: each holds figures or a one-line `error`."""
    return [*section_names(cores), "tasks"]


# ---------------------------------------------------------------- measurements (in the section process)


@contextmanager
def gpu_watch(device: str) -> Iterator[dict]:
    """Peak GPU memory and utilisation (nvidia-smi, every 0.5 s) over the block, into the yielded dict."""
    import torch

    figures: dict = {}
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                ).stdout
                samples.append(int(out.split()[0]))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                return

    watcher = None
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        if shutil.which("nvidia-smi"):
            watcher = threading.Thread(target=sample, daemon=True)
            watcher.start()
    try:
        yield figures
    finally:
        stop.set()
        if watcher:
            watcher.join()
        if device == "cuda":
            figures["peak_gpu_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            # The last half leaves out start-up: cuDNN autotuning, torch.compile, the workers' first batch.
            steady = samples[len(samples) // 2 :]
            figures["gpu_util_pct"] = round(statistics.mean(samples), 1) if samples else None
            figures["gpu_util_pct_last_half"] = round(statistics.mean(steady), 1) if steady else None
            figures["gpu_util_samples"] = len(samples)


def split_size(shards: Path, split: str) -> int:
    """Samples in `split`'s index; 0 when it has none."""
    index = shards / f"{split}.json"
    if not index.is_file():
        return 0
    return sum(int(entry["nsamples"]) for entry in json.loads(index.read_text())["shardlist"])


def repeated_shards(shards: Path, out: Path, samples: int) -> Path:
    """`shards` with the train split's tars listed until it holds at least `samples` samples."""
    index = json.loads((shards / "train.json").read_text())
    repeats = max(1, math.ceil(samples / max(split_size(shards, "train"), 1)))
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(shards / "dataset.json", out / "dataset.json")
    entries = []
    for copy in range(repeats):
        for entry in index["shardlist"]:
            name = f"r{copy:03d}-{Path(entry['url']).name}"
            if not (out / name).exists():
                (out / name).symlink_to((shards / entry["url"]).resolve())
            entries.append({**entry, "url": name})
    (out / "train.json").write_text(json.dumps({**index, "shardlist": entries}))
    return out


def measure_synthetic(args: argparse.Namespace, compiled: bool) -> dict:
    import torch
    from train import median_rate, synthetic_rate  # benchmarks/train.py, beside this file

    from tkds.models.presets import get_preset

    preset = dataclasses.replace(get_preset(args.preset), compile=compiled)
    with tempfile.TemporaryDirectory() as tmp, gpu_watch(args.device) as watch:
        clips_per_s = synthetic_rate(args.method, preset, args.steps, args.device, Path(tmp))
        data_wait = median_rate(Path(tmp) / "train.jsonl")[1]
    applied = compiled and args.device == "cuda"  # fit compiles the encoders on CUDA only
    return {
        "videos_per_s": round(clips_per_s / 2, 2),  # a video is two clips (views) in a step
        "clips_per_s": round(clips_per_s, 2),
        "batch": preset.batch_size,
        "steps": args.steps,
        "compiled": applied,
        "data_wait_share": round(data_wait, 3),
        "torch_threads": torch.get_num_threads(),
        **watch,
    }


def measure_train(args: argparse.Namespace) -> dict:
    from train import median_rate

    from tkds.models.presets import get_preset
    from tkds.models.train import default_workers, train

    preset = get_preset(args.preset)
    workers = default_workers()
    shards = repeated_shards(args.shards, args.work / "repeated", 2 * preset.batch_size * workers)
    with gpu_watch(args.device) as watch:
        result = train(
            shards,
            args.work / "train",
            args.method,
            preset,
            device=args.device,
            num_workers=workers,
            progress=False,
            max_steps=args.steps,
        )
    clips_per_s, data_wait = median_rate(result.log)
    return {
        "videos_per_s": round(clips_per_s / 2, 2),
        "clips_per_s": round(clips_per_s, 2),
        "batch": preset.batch_size,
        "steps": result.step,
        "workers": workers,
        "compiled": preset.compile and args.device == "cuda",
        "data_wait_share": round(data_wait, 3),
        "last_loss": result.last_loss,
        **watch,
    }


def measure_loader(args: argparse.Namespace, workers: int) -> dict:
    import torch

    import tkds
    from tkds.models.presets import get_preset

    preset = get_preset(args.preset)
    # Enough for every batch asked for, and two per worker (each worker drops its own partial batch).
    wanted = max(args.loader_batches + 1, 2 * workers)
    shards = repeated_shards(args.shards, args.work / "repeated", wanted * preset.batch_size)
    dataset = tkds.load_shards(
        shards,
        "train",
        **preset.clip_options(),
        views=2,
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=preset.batch_size,
        num_workers=workers,
        collate_fn=tkds.collate,
        prefetch_factor=4,
        drop_last=True,
    )
    batches, samples, started = iter(loader), 0, None
    # The first batch pays for starting the workers; the clock starts after it.
    for count, batch in enumerate(batches):
        if count == 0:
            started = time.perf_counter()
            continue
        samples += len(batch["key"])
        if count >= args.loader_batches or time.monotonic() > args.stop_at:
            break
    elapsed = time.perf_counter() - started if started else 0.0
    if samples == 0:
        raise RuntimeError(f"the loader gave fewer than 2 batches of {preset.batch_size} in time")
    return {
        "samples_per_s": round(samples / elapsed, 2),
        "workers": workers,
        "samples": samples,
        "batch": preset.batch_size,
    }


def measure_embed(args: argparse.Namespace) -> dict:
    from tkds.benchmarks.run import embeddings_table
    from tkds.benchmarks.tasks import run_tasks
    from tkds.dataset.split import SPLITS
    from tkds.models.embed import embed
    from tkds.models.methods import method_class
    from tkds.models.presets import get_preset
    from tkds.models.train import fit

    results: dict = {}
    checkpoint, method = args.work / "train" / "checkpoint.pt", args.method
    if not checkpoint.exists():  # train_shards failed: embed with untrained encoders instead
        method = "random"
        fit(method, get_preset(args.preset), lambda epoch: [], 0, args.work / "random", device=args.device)
        checkpoint = args.work / "random" / "checkpoint.pt"
    splits = [split for split in SPLITS if split_size(args.shards, split)]  # a small corpus may lack val
    parts, seconds = {}, {}
    with gpu_watch(args.device) as watch:
        for split in splits:
            started = time.perf_counter()
            parts[split] = embed(checkpoint, args.shards, split, device=args.device, progress=False)
            seconds[split] = time.perf_counter() - started
    results["embed"] = {
        "method": method,
        "videos_per_s_test": round(len(parts["test"].keys) / seconds["test"], 2),
        "videos": {split: len(part.keys) for split, part in parts.items()},
        "seconds": {split: round(s, 2) for split, s in seconds.items()},
        **watch,
    }
    try:
        manifest = json.loads((args.shards / "dataset.json").read_text())
        table = embeddings_table(list(parts.values()), manifest.get("label_column", "category"))
        started = time.perf_counter()
        feature_sets = ["video"]
        if method_class(method).modality == "audio-visual":
            feature_sets += ["audio", "audio-visual"]
        rows = {}
        for features in feature_sets:
            ran = run_tasks(table, None, features, seed=0)
            metrics = {  # an undefined metric (NaN) is null in JSON, as in `tkds bench`
                task: {k: v if math.isfinite(v) else None for k, v in values.items()}
                for task, values in ran.metrics.items()
            }
            rows[features] = {"metrics": metrics, "skipped": ran.skipped}
        results["tasks"] = {
            "method": method,
            "rows": rows,
            "seconds": round(time.perf_counter() - started, 2),
        }
    except Exception as error:  # one line, like every other measurement
        results["tasks"] = {"error": one_line(error)}
    return results


def run_section(args: argparse.Namespace) -> None:
    """In the section's own process: measure, and write {entry: figures or error} to WORK/NAME.json."""
    import torch

    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    else:
        # CI's cores are shared: two intra-op threads there ran the tiny step 3x slower than one.
        torch.set_num_threads(1)
    name = args.section
    measures: dict[str, Callable[[], dict]] = {
        "synthetic_eager": lambda: measure_synthetic(args, compiled=False),
        "synthetic_compiled": lambda: measure_synthetic(args, compiled=True),
        "train_shards": lambda: measure_train(args),
        "embed": lambda: measure_embed(args),
    }
    if name.startswith("loader_"):
        workers = int(name.removeprefix("loader_").removesuffix("w"))
        measures[name] = lambda: measure_loader(args, workers)
    started = time.perf_counter()
    try:
        figures = measures[name]()
        results = figures if name == "embed" else {name: figures}
    except Exception as error:
        results = {name: {"error": one_line(error)}}
    results[name]["seconds_total"] = round(time.perf_counter() - started, 2)
    (args.work / f"{name}.json").write_text(json.dumps(results, indent=1, default=float))


# ---------------------------------------------------------------- the run (parent process)


def machine(device: str) -> dict:
    """The run's machine and versions, without touching CUDA: the sections fork from this process."""
    info: dict = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "device": device,
    }
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        info["gpu"] = subprocess.run(query, capture_output=True, text=True).stdout.strip()
    try:
        import torch

        info["torch"] = torch.__version__
        import torchcodec  # loads the FFmpeg libraries: a missing one shows here first

        info["torchcodec"] = torchcodec.__version__
        # Imported once here, so that each forked section starts without importing them again.
        import tkds.dataset.loader
        import tkds.models.train  # noqa: F401
    except Exception as error:
        info["error"] = one_line(error)
    return info


def section_process(args: argparse.Namespace, log: Path) -> None:
    """The forked section: its own process group (for the kill) and its output into `log`."""
    os.setsid()
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(out, 1)
    os.dup2(out, 2)
    run_section(args)


def launch(args: argparse.Namespace, name: str, budget_s: float) -> dict:
    """Run one section in a forked process, killed with its workers at `budget_s`; its entries, or
    its failure. Forked, not started afresh, so it needs no second import of torch; the parent never
    initialises CUDA, so the child may."""
    log = args.work / f"{name}.log"
    # Loops that can stop early stop here, leaving time to shut their workers down before the kill.
    args.section, args.stop_at = name, time.monotonic() + 0.8 * budget_s
    started = time.perf_counter()
    sys.stdout.flush()
    process = multiprocessing.get_context("fork").Process(target=section_process, args=(args, log))
    process.start()
    process.join(budget_s)
    failure = None if process.exitcode == 0 else f"exited with code {process.exitcode}"
    if process.exitcode is None:
        failure = f"stopped at its time budget of {budget_s:.0f} s"
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # the section, if still running, and its DataLoader workers
    process.join()
    text = log.read_text(errors="replace") if log.exists() else ""
    print(f"--- {name} ({time.perf_counter() - started:.1f} s)\n{text}", end="", flush=True)
    result_file = args.work / f"{name}.json"
    if result_file.exists():  # measured, even if shutting down its workers then ran out of time
        return json.loads(result_file.read_text())
    lines = [line for line in text.splitlines() if line.strip()]
    return {name: {"error": f"{failure}: {lines[-1][:200] if lines else 'no output'}"}}


def add_ratio(entries: dict) -> None:
    """train_shards / the synthetic step of the same compile setting, both of this run."""
    fed = entries.get("train_shards", {})
    if "videos_per_s" not in fed:
        return
    ceiling = entries.get("synthetic_compiled" if fed["compiled"] else "synthetic_eager", {})
    if ceiling.get("videos_per_s"):
        fed["ratio_to_synthetic"] = round(fed["videos_per_s"] / ceiling["videos_per_s"], 3)
        fed["ratio_goal_met"] = fed["ratio_to_synthetic"] >= 0.8


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"# GPU path: {report['preset']} {report['method']}",
        "",
        f"{m.get('gpu', 'no GPU')}, {m['cores']} cores, Python {m['python']}, torch {m.get('torch')}, "
        f"torchcodec {m.get('torchcodec')}; {m['date']}; {report['steps']} steps, "
        f"budget {report['budget_s']:.0f} s, wall {report['wall_s']:.0f} s",
        "",
        "| measurement | figure | details |",
        "| --- | --- | --- |",
    ]
    for name, entry in report["entries"].items():
        if "error" in entry:
            lines.append(f"| {name} | failed | {entry['error'].replace('|', '/')} |")
            continue
        if name == "tasks":
            for features, row in entry["rows"].items():
                scores = ", ".join(  # each task's first two metrics; gpu.json has them all
                    f"{task} {metric} {value:.3f}"
                    for task, metrics in row["metrics"].items()
                    for metric, value in list(metrics.items())[:2]
                    if isinstance(value, float) and math.isfinite(value)
                )
                lines.append(f"| tasks ({features}) | {len(row['metrics'])} ran | {scores or 'none'} |")
            continue
        key = next(key for key in HEADLINES if key in entry)
        figure = f"{entry[key]} {HEADLINES[key]}"
        details = ", ".join(f"{k} {v}" for k, v in entry.items() if k not in HEADLINES and v is not None)
        lines.append(f"| {name} | {figure} | {details} |")
    if report["failures"]:
        lines += ["", "Failures:", "", *(f"- {line}" for line in report["failures"])]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> dict:
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "preset": args.preset,
        "method": args.method,
        "steps": args.steps,
        "budget_s": args.budget_s,
        "shards": str(args.shards),
        "machine": machine(args.device),
    }
    entries: dict = {}
    with tempfile.TemporaryDirectory(prefix="tkds-gpu-") as work:
        args.work = Path(work)
        names = section_names(os.cpu_count() or 1)
        for position, name in enumerate(names):
            remaining = args.budget_s - MARGIN_S - (time.monotonic() - STARTED)
            weights = [SHARES[n.split("_")[0] if n.startswith("loader_") else n] for n in names[position:]]
            budget = remaining * weights[0] / sum(weights)
            if budget < 5:
                entries[name] = {"error": f"skipped: its share of the {remaining:.0f} s left is under 5 s"}
                continue
            entries.update(launch(args, name, budget))
    entries.setdefault("tasks", {"error": "skipped: the embed section gave no embeddings"})
    add_ratio(entries)
    report["entries"] = {
        name: entries.get(name, {"error": "not run"}) for name in entry_names(os.cpu_count() or 1)
    }
    report["failures"] = [f"{name}: {e['error']}" for name, e in report["entries"].items() if "error" in e]
    if "error" in report["machine"]:
        report["failures"].insert(0, f"machine: {report['machine']['error']}")
    report["wall_s"] = round(time.monotonic() - STARTED, 1)
    (args.out / "gpu.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    (args.out / "gpu.md").write_text(markdown(report))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path, help="folder for gpu.json and gpu.md")
    parser.add_argument("--cpu", action="store_true", help="cpu-tiny on the CPU, a few steps: for CI")
    parser.add_argument("--shards", type=Path, default=DEFAULT_SHARDS)
    parser.add_argument("--steps", type=int, help="training steps per section (default 30; 5 with --cpu)")
    parser.add_argument("--budget-s", type=float, default=480.0, help="the whole run ends within this")
    parser.add_argument("--method", default="av-simclr")
    args = parser.parse_args()
    args.shards = args.shards.resolve()
    if not (args.shards / "train.json").is_file():
        sys.exit(f"no shards at {args.shards}: pass --shards DIR, or run scripts/gpu-carry.sh")
    from train import WARMUP_STEPS

    args.preset, args.device = ("cpu-tiny", "cpu") if args.cpu else ("gpu-small", "cuda")
    args.steps = max(args.steps or (5 if args.cpu else 30), WARMUP_STEPS + 2)
    args.loader_batches = 3 if args.cpu else 30
    report = run(args)
    print(markdown(report), end="")


if __name__ == "__main__":
    main()
