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
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

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
    args = parser.parse_args()

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
