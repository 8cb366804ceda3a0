"""Near-duplicate search and dedupe against their limit, on synthetic frame hashes with planted copies:

search      `near_duplicate_pairs` (the indexed search plus the exact rule) over every video's hashes
dedupe      `duplicate_clusters` end to end (sha256 and equal-hash joins, the search, union-find), next to
            the issue's limit of 60 s for 290,000 videos, scaled linearly to N; aim ratio <= 1.0
split       `assign_splits` by author with the clusters (each cluster and its authors one group)
reference   the brute-force rule (tests/test_dedupe_index.py) on the first M videos, next to the search on
            the same M, both in this run: the speed-up of the index

Every video has 16 random 64-bit frame hashes (unrelated frames differ in about 32 bits); 2% of them get
1-3 copies with 0-3 bits flipped per frame (a re-encode), which must cluster with them, and one decoy with
6 bits flipped per frame, which must not. Precision and recall are over same-cluster pairs. The last line
is one JSON object with the figures.

  python benchmarks/dedupe.py [--videos 29000] [--reference 8000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from tkds.dataset.dedupe import duplicate_clusters
from tkds.dataset.framehash import near_duplicate_pairs
from tkds.dataset.select import Candidate
from tkds.dataset.split import assign_splits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_dedupe_index import brute_force_pairs  # one brute force: the test's

LIMIT_S, LIMIT_VIDEOS = 60.0, 290_000
FRAMES = 16


def planted_hashes(videos: int, seed: int) -> tuple[list[str], list[str], dict[str, str]]:
    """Ids, their frame hashes (hex), and planted copy -> its original: 2% of the videos get 1-3 copies
    with 0-3 bits flipped per frame (must cluster), and one decoy with 6 bits flipped (must not)."""
    rng = np.random.default_rng(seed)
    planted_count = max(1, videos // 50)
    copies = rng.integers(1, 4, size=planted_count)
    originals = videos - int(copies.sum()) - planted_count
    words = rng.integers(0, 2**64 - 1, size=(originals, FRAMES), dtype=np.uint64, endpoint=True)
    planted = rng.choice(originals, size=planted_count, replace=False)
    owners = np.repeat(planted, copies)
    table = np.concatenate([
        words,
        flipped(rng, words[owners], rng.integers(0, 4, size=(len(owners), FRAMES))),
        flipped(rng, words[planted], np.full((planted_count, FRAMES), 6)),
    ]).astype(">u8")  # fmt: skip
    ids = [str(10**15 + i) for i in range(len(table))]
    hashes = [row.tobytes().hex() for row in table]
    truth = {ids[originals + i]: ids[owner] for i, owner in enumerate(owners.tolist())}
    return ids, hashes, truth


def synthetic_world(videos: int, seed: int) -> tuple[dict[str, str], dict[str, str], list[Candidate]]:
    """Hashes, planted copy -> its original, and candidates by about videos/10 authors."""
    ids, table, truth = planted_hashes(videos, seed)
    hashes = dict(zip(ids, table, strict=True))
    rng = np.random.default_rng(seed + 1)
    authors = rng.integers(1, max(2, videos // 10), size=len(ids))
    candidates = [
        Candidate(
            id=video_id, author_id=str(author), author_unique_id=None, music_id=None, music_title=None,
            description=None, create_time=1_700_000_000 + i, source=None, path=Path("x"),
            sha256=video_id, bytes=1, stats={}, author_stats={}, hashtags=[],
        )
        for i, (video_id, author) in enumerate(zip(ids, authors.tolist(), strict=True))
    ]  # fmt: skip
    return hashes, truth, candidates


def flipped(rng: np.random.Generator, words: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """`words` with exactly counts[...] distinct random bits of each word flipped."""
    order = np.argsort(rng.random((*counts.shape, 64)), axis=-1).astype(np.uint64)  # bits in random order
    bits = np.where(np.arange(64) < counts[..., None], np.uint64(1) << order, np.uint64(0))
    return words ^ np.bitwise_or.reduce(bits, axis=-1)


def same_cluster_pairs(mapping: dict[str, str]) -> set[tuple[str, str]]:
    groups: dict[str, set[str]] = {}
    for member, keeper in mapping.items():
        groups.setdefault(keeper, {keeper}).add(member)
    return {(a, b) for group in groups.values() for a in group for b in group if a < b}


@contextmanager
def timed() -> Iterator[dict[str, float]]:
    """Wall and CPU seconds of the block: CPU time tells a busy machine's waiting apart."""
    figures: dict[str, float] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    yield figures
    figures.update(wall_s=time.perf_counter() - wall, cpu_s=time.process_time() - cpu)


def _shown(figures: dict[str, float]) -> str:
    return f"{figures['wall_s']:7.2f} s ({figures['cpu_s']:.2f} s)"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=29_000)
    parser.add_argument("--reference", type=int, default=8_000, help="videos for the brute force (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    hashes, truth, candidates = synthetic_world(args.videos, args.seed)
    rss_before = peak_rss_mb()

    with timed() as search:
        pairs = near_duplicate_pairs(hashes)
    with timed() as dedupe:
        clusters = duplicate_clusters(candidates, hashes)
    with timed() as split:
        splits = assign_splits(candidates, "author", clusters=clusters)
    rss_after = peak_rss_mb()

    found, planted = same_cluster_pairs(clusters), same_cluster_pairs(truth)
    precision = len(found & planted) / len(found) if found else 1.0
    recall = len(found & planted) / len(planted) if planted else 1.0
    straddling = sum(len({splits[m] for m in group}) > 1 for group in _members(clusters).values())
    limit_s = LIMIT_S * args.videos / LIMIT_VIDEOS

    reference = {}
    if args.reference:
        sample = dict(list(hashes.items())[: args.reference])
        with timed() as brute:
            expected = brute_force_pairs(sample, 4.0)
        with timed() as indexed:
            same = near_duplicate_pairs(sample) == expected
        reference = {"videos": len(sample), "brute_force": brute, "index": indexed, "same_pairs": same}

    load = os.getloadavg()[0]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {load:.1f}")
    print(f"videos: {args.videos} x {FRAMES} frame hashes, {len(truth)} planted copies; times as wall (CPU)")
    print(f"search     {_shown(search)}  {len(pairs)} pairs")
    quality = f"precision {precision:.3f}, recall {recall:.3f}"
    print(f"dedupe     {_shown(dedupe)}  {len(found)} same-cluster pairs, {quality}")
    ratio, cpu_ratio = dedupe["wall_s"] / limit_s, dedupe["cpu_s"] / limit_s
    print(f"           limit {limit_s:.1f} s (60 s at 290,000, scaled) | ratio {ratio:.2f}"
          f" ({cpu_ratio:.2f} in CPU time; aim <= 1.0)")  # fmt: skip
    print(f"split      {_shown(split)}  clusters straddling splits: {straddling}")
    print(f"peak RSS   {rss_after:7.0f} MB ({rss_before:.0f} MB with the hashes made, before the search)")
    if reference:
        speedup = reference["brute_force"]["cpu_s"] / reference["index"]["cpu_s"]
        print(f"reference  {len(sample)} videos: brute force {_shown(brute)} | index {_shown(indexed)}"
              f" | speed-up {speedup:.0f}x (CPU) | same pairs: {same}")  # fmt: skip
    figures = {
        "videos": args.videos, "search": search, "dedupe": dedupe, "split": split,
        "pairs": len(pairs), "precision": precision, "recall": recall, "straddling_clusters": straddling,
        "limit_s": limit_s, "ratio": ratio, "cpu_ratio": cpu_ratio, "peak_rss_mb": rss_after,
        "rss_before_search_mb": rss_before, "load": load, "reference": reference,
    }  # fmt: skip
    print(json.dumps(figures))


def _members(clusters: dict[str, str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for member, keeper in clusters.items():
        groups.setdefault(keeper, []).append(member)
    return groups


if __name__ == "__main__":
    main()
