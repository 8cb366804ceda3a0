"""Loader throughput against its limit: torchcodec decoding the very same clips.

Both are measured in this run, on this machine, on one thread, over the same samples:
  load_shards  `tkds.load_shards` end to end (tar read, video decode, crops, colour, flac, log-mel)
  raw decode   VideoDecoder(bytes, approximate, 1 thread).get_frames_at(the same frame indices), plus
               AudioDecoder on the flac for each view's 2 s window, from memory, no tar, no augmentation
  + resize     the same with torchcodec's decoder-native Resize to a short side of size·8/7 (the
               R(2+1)D recipe's 128 for 112), which the loader does not use if it is no faster
Prints clips/s (a sample is `--views` clips), load_shards / raw decode (aim: at least 0.8), and the
samples/s of a DataLoader with 1 and 2 workers. Each figure is the best of `--epochs` passes.

Without --shards it generates a SynthTok corpus (144x256, 15 fps), imports it into DuckDB and builds
shards with `build_shards` (`--stored-side` is `tkds shard --size`, which never upscales).

    python benchmarks/loader.py [--shards DIR] [--videos 24] [--seconds 5] [--stored-side 256] [--epochs 5]

`--index-samples N` measures start-up instead: a split of N samples in shards of `--samples-per-shard`
(the builder's 256 by default), each shard a hard link to one tar that repeats the real samples under new
keys, behind the split's wids index. In a fresh process each time (imports untimed), it times
`load_shards(...)` to the first example, and a DataLoader with 2 workers to its first batch of 8, against
the 10 s limit; and, measured in the same run, one sample's decode alone (the floor of any first example).

    python benchmarks/loader.py --index-samples 290000 [--samples-per-shard 256] [--shards DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader
from torchcodec.decoders import AudioDecoder
from torchcodec.transforms import Resize

import tkds
from tkds.collector.importer import import_captures
from tkds.dataset import loader
from tkds.dataset.build import ShardParams, build_shards
from tkds.synth import generate

STARTUP_LIMIT_S = 10.0
STARTUP_RUNS = 3
# A fresh process: imports (untimed), then load_shards → first example, and a DataLoader's first batch.
STARTUP = """
import json, sys, time
import torch
from torch.utils.data import DataLoader
import tkds
from tkds.dataset import loader

root, split = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)
started = time.perf_counter()
ds = tkds.load_shards(root, split)
opened = time.perf_counter()
next(iter(ds))
first = time.perf_counter()
data = DataLoader(tkds.load_shards(root, split), batch_size=8, num_workers=2, collate_fn=tkds.collate)
next(iter(data))
batch = time.perf_counter()
print(json.dumps({"open_s": opened - started, "first_s": first - started, "batch_s": batch - first,
                  "samples": ds.num_samples, "shards": len(ds.shards)}))
"""


def write_shards(corpus: Path, out: Path, stored_side: int) -> Path:
    """The corpus through the real pipeline: imported into DuckDB, then `build_shards`, all in train."""
    db = out.parent / "tk.duckdb"
    import_captures(db, sorted((corpus / "items").glob("*.json")), corpus / "media", progress=False)
    params = ShardParams(size=stored_side, ratios=(1.0, 0.0, 0.0), samples_per_shard=8)
    build_shards(db, out, params, progress=False)
    return out


def flac_by_video(shards: Path, split: str) -> dict[bytes, bytes]:
    """Each sample's flac sidecar, keyed by its video bytes (what the decoder recording sees)."""
    index = json.loads((shards / f"{split}.json").read_text())
    urls = [str(shards / entry["url"]) for entry in index["shardlist"]]
    return {s["mp4"]: s["flac"] for s in wds.WebDataset(urls, shardshuffle=False) if "flac" in s}


def best_rates(runs: dict[str, Callable[[], int]], passes: int) -> dict[str, float]:
    """Items/s of each run's fastest pass. The passes alternate between the runs, so that load from
    other processes on a shared machine falls on all of them alike."""
    best = dict.fromkeys(runs, 0.0)
    for _ in range(passes):
        for name, run in runs.items():
            started = time.perf_counter()
            items = run()
            best[name] = max(best[name], items / (time.perf_counter() - started))
    return best


def record_requests(ds: loader.ShardDataset) -> list[tuple[bytes, list[int]]]:
    """The (video bytes, frame indices) that one pass of `ds` asks its decoder for."""
    requests = []

    class Recording(loader.VideoDecoder):
        def __init__(self, source: bytes, **kwargs) -> None:
            self.source = source
            super().__init__(source, **kwargs)

        def get_frames_at(self, indices: list[int]):
            requests.append((self.source, list(indices)))
            return super().get_frames_at(indices)

    original, loader.VideoDecoder = loader.VideoDecoder, Recording
    try:
        for _ in ds:
            pass
    finally:
        loader.VideoDecoder = original
    return requests


def native_resize(source: bytes, short_side: int) -> Resize:
    """torchcodec's in-decoder Resize of a video to `short_side`, keeping its aspect ratio."""
    meta = loader.VideoDecoder(source, seek_mode="approximate").metadata
    scale = short_side / min(meta.height, meta.width)
    return Resize((round(meta.height * scale), round(meta.width * scale)))


def decode_pass(
    requests: list[tuple[bytes, list[int]]],
    transforms: dict[bytes, list[Resize]],
    flacs: dict[bytes, bytes],
    views: int,
    audio_seconds: float = 2.0,
) -> int:
    """Decode the recorded frames with the loader's decoder settings, and `views` audio windows of each
    sample's flac; returns the sample count."""
    for source, indices in requests:
        if source in flacs:
            audio = AudioDecoder(flacs[source], sample_rate=16000, num_channels=1)
            for view in range(views):
                audio.get_samples_played_in_range(view * 0.5, view * 0.5 + audio_seconds)
        decoder = loader.VideoDecoder(
            source,
            seek_mode="approximate",
            num_ffmpeg_threads=1,
            dimension_order="NHWC",
            transforms=transforms.get(source),
        )
        decoder.get_frames_at(indices)
    return len(requests)


def repeated_shard(source: Path, split: str, samples: int, out: Path) -> None:
    """One tar of `samples` samples: the real samples of `source`'s split, cycled under new keys."""
    real = [(shard.path, members) for shard in loader.read_index(source, split)
            for _, members in loader.shard_table(shard)]  # fmt: skip
    with tarfile.open(out, "w") as tar:
        for number in range(samples):
            path, members = real[number % len(real)]
            with open(path, "rb") as shard:
                for extension, (offset, size) in members.items():
                    shard.seek(offset)
                    info = tarfile.TarInfo(f"{number:012d}.{extension}")
                    info.size, info.mtime, info.mode = size, 1_700_000_000, 0o444
                    tar.addfile(info, io.BytesIO(shard.read(size)))


def write_big_index(source: Path, split: str, total: int, per_shard: int, root: Path) -> None:
    """A split of `total` samples whose shards are hard links to one repeated tar, and its wids index."""
    (root / split).mkdir(parents=True)
    template = root / "template.tar"
    repeated_shard(source, split, per_shard, template)
    digest = hashlib.sha256(template.read_bytes()).hexdigest()
    shardlist = []
    for number, start in enumerate(range(0, total, per_shard)):
        count = min(per_shard, total - start)
        url = f"{split}/{split}-{number:06d}.tar"
        if count == per_shard:
            os.link(template, root / url)
            size, sha = template.stat().st_size, digest
        else:  # the last shard holds the remainder
            repeated_shard(source, split, count, root / url)
            size, sha = (root / url).stat().st_size, hashlib.sha256((root / url).read_bytes()).hexdigest()
        shardlist.append({"url": url, "nsamples": count, "filesize": size, "sha256": sha})
    index = {"wids_version": 1, "name": f"tkds-{split}", "shardlist": shardlist}
    (root / f"{split}.json").write_text(json.dumps(index, indent=1))  # indented, as the builder writes it
    (root / loader.MANIFEST).write_bytes((source / loader.MANIFEST).read_bytes())


def decode_floor(root: Path, split: str) -> float:
    """Seconds to read and make one example from a located sample, best of STARTUP_RUNS: no index, no scan."""
    ds = tkds.load_shards(root, split)
    tables = {0: loader.shard_table(ds.shards[0])}
    best = float("inf")
    for _ in range(STARTUP_RUNS):
        started = time.perf_counter()
        for _, raw in loader.read_samples([(0, 0, 0)], ds.shards, tables):
            loader.make_example(raw, ds.spec, None, {}, np.random.default_rng(0))
        best = min(best, time.perf_counter() - started)
    return best


def startup(args: argparse.Namespace, tmp: Path) -> None:
    """Start-up on an index of `--index-samples` samples, against STARTUP_LIMIT_S."""
    source = args.shards
    if source is None:
        corpus = tmp / "corpus"
        generate(corpus, args.videos, seed=0, seconds=(args.seconds, args.seconds), progress=False)
        source = write_shards(corpus, tmp / "shards", args.stored_side)
    root = tmp / "big"
    started = time.perf_counter()
    write_big_index(source, args.split, args.index_samples, args.samples_per_shard, root)
    written_s = time.perf_counter() - started
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    floor = decode_floor(root, args.split)
    torch.set_num_threads(threads)
    runs = []
    for _ in range(STARTUP_RUNS):
        command = [sys.executable, "-c", STARTUP, str(root), args.split]
        runs.append(json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout))
    index_mb = (root / f"{args.split}.json").stat().st_size / 1e6
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"index: {runs[0]['samples']:,} samples in {runs[0]['shards']:,} shards of "
          f"{args.samples_per_shard} ({index_mb:.1f} MB of json; written in {written_s:.1f} s); "
          f"{STARTUP_RUNS} fresh processes")  # fmt: skip
    print(f"{'':40}{'best s':>8}{'worst s':>9}{'limit/best':>11}")
    for name, field in (
        ("load_shards() returns", "open_s"),
        ("load_shards() → first example", "first_s"),
        ("DataLoader(2 workers) → first batch of 8", "batch_s"),
    ):
        values = [run[field] for run in runs]
        print(f"{name:40}{min(values):8.2f}{max(values):9.2f}{STARTUP_LIMIT_S / min(values):11.1f}")
    first = min(run["first_s"] for run in runs)
    print(f"one sample's decode alone (floor): {floor:.3f} s; first example / floor: {first / floor:.1f}")
    verdict = "met" if first < STARTUP_LIMIT_S else "NOT met"
    print(f"start-up {first:.2f} s against the {STARTUP_LIMIT_S:.0f} s limit: {verdict}")
    print(json.dumps({"index_samples": args.index_samples, "shards": runs[0]["shards"], "runs": runs,
                      "decode_floor_s": round(floor, 4), "limit_s": STARTUP_LIMIT_S}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shards", type=Path, help="a shard directory; default: write SynthTok shards")
    parser.add_argument("--split", default="train")
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--stored-side", type=int, default=256, help="tkds shard --size (never upscales)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--index-samples", type=int, help="measure start-up on an index of this many samples")
    parser.add_argument("--samples-per-shard", type=int, default=ShardParams.samples_per_shard)
    args = parser.parse_args()
    if args.index_samples:
        with tempfile.TemporaryDirectory() as tmp:
            startup(args, Path(tmp))
        return

    with tempfile.TemporaryDirectory() as tmp:
        shards = args.shards
        if shards is None:
            corpus = Path(tmp) / "corpus"
            generate(corpus, args.videos, seed=0, seconds=(args.seconds, args.seconds), progress=False)
            shards = write_shards(corpus, Path(tmp) / "shards", args.stored_side)
        ds = tkds.load_shards(shards, args.split, frames=args.frames, size=args.size, views=args.views)

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as in a DataLoader worker
        requests = record_requests(ds)  # also warms the page cache and the imports
        flacs = flac_by_video(shards, args.split)
        resized = {source: [native_resize(source, args.size * 8 // 7)] for source, _ in requests}
        height, width = (
            loader.VideoDecoder(requests[0][0], seek_mode="approximate").get_frame_at(0).data.shape[1:]
        )
        rates = best_rates(
            {
                "load_shards, 1 thread": lambda: sum(1 for _ in ds),
                "raw decode, same clips": lambda: decode_pass(requests, {}, flacs, args.views),
                "  + decoder-native resize": lambda: decode_pass(requests, resized, flacs, args.views),
            },
            args.epochs,
        )
        torch.set_num_threads(threads)

        loaders = {
            f"DataLoader, {workers} worker(s)": DataLoader(
                ds, batch_size=8, num_workers=workers, persistent_workers=True, collate_fn=tkds.collate
            )
            for workers in (1, 2)
        }
        for data in loaders.values():
            sum(len(batch["key"]) for batch in data)  # starts the workers, untimed
        rates |= best_rates(
            {name: lambda data=data: sum(len(b["key"]) for b in data) for name, data in loaders.items()},
            args.epochs,
        )
        del loaders

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}")
    source = args.shards or "SynthTok"
    print(f"shards: {source}, split {args.split}, {ds.num_samples} samples of {width}x{height}")
    print(
        f"clip: {args.frames} frames at {args.size} px, {args.views} views, 2 s audio; best of {args.epochs}"
    )
    print(f"{'':28}{'samples/s':>10}{'clips/s':>10}")
    for name, rate in rates.items():
        print(f"{name:28}{rate:10.1f}{rate * args.views:10.1f}")
    ratio = rates["load_shards, 1 thread"] / rates["raw decode, same clips"]
    print(f"load_shards / raw decode: {ratio:.2f} (aim >= 0.8: {'met' if ratio >= 0.8 else 'NOT met'})")
    scaling = rates["DataLoader, 2 worker(s)"] / rates["DataLoader, 1 worker(s)"]
    print(f"2 workers / 1 worker: {scaling:.2f}")


if __name__ == "__main__":
    main()
