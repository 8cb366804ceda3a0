"""Split: deterministic assignment by a salted hash of a group id, so adding videos never moves old ones
(unless a new near duplicate joins two groups: then one of them follows the other)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tkds import ids
from tkds.errors import TkdsError

if TYPE_CHECKING:  # select imports duckdb, which reading SPLITS must not need (the GPU machine lacks it)
    from tkds.dataset.select import Candidate

SPLITS = ("train", "val", "test")
SPLIT_METHODS = ("author", "time", "random")
SALT_VERSION = "tkds-split-v1"


def parse_ratios(text: str) -> tuple[float, float, float]:
    """'0.8,0.1,0.1' → (0.8, 0.1, 0.1); three non-negative numbers that sum to 1."""
    try:
        ratios = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise TkdsError(f"--ratios {ids.preview(text)}: give three numbers such as 0.8,0.1,0.1") from None
    return check_ratios(ratios, text)


def is_whole(value: object) -> bool:
    """An int that is not a bool: what every count, size and seed must be."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_ratios(ratios: object, shown: object = None) -> tuple[float, float, float]:
    """`ratios` as train,val,test: three finite non-negative numbers summing to 1, else a `TkdsError`."""
    numbers = ratios if isinstance(ratios, tuple | list) else ()
    valid = (
        len(numbers) == 3
        and all(is_number(r) for r in numbers)
        and min(numbers) >= 0
        and abs(sum(numbers) - 1) <= 1e-6
    )
    if not valid:
        raise TkdsError(
            f"--ratios {ids.preview(ratios if shown is None else shown)}: "
            "give train,val,test as three finite, non-negative numbers summing to 1"
        )
    return tuple(float(r) for r in numbers)  # type: ignore[return-value]


def check_seed(seed: object) -> int:
    """`seed` as a whole number of at most 63 bits (the split's salt), else a `TkdsError`."""
    if not is_whole(seed) or abs(seed) >= 2**63:
        raise TkdsError(f"--seed {ids.preview(seed)}: give a whole number")
    return seed


def unit_hash(group: str, seed: int) -> float:
    """A uniform number in [0, 1) from the group id and a versioned salt."""
    digest = hashlib.sha256(f"{SALT_VERSION}:{seed}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _bucket(value: float, ratios: tuple[float, ...], names: tuple[str, ...]) -> str:
    edge = 0.0
    for name, ratio in zip(names, ratios, strict=True):
        edge += ratio
        if value < edge:
            return name
    return names[-1]


def assign_splits(
    candidates: list[Candidate],
    method: str = "author",
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    cut: datetime | None = None,
    clusters: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """video id → split, for every candidate.

    - author: the author id is the group, so nobody's videos straddle splits; a video whose author id is
      missing or invalid (not a digit string) is its own group, as an unknown author;
    - random: each video is its own group;
    - time: videos created before `cut` are train; later ones go to val and test in the ratio of those two,
      grouped by author.

    `clusters` (video id → its duplicate cluster's keeper, `duplicate_clusters`) joins groups: a cluster
    and every group holding one of its members become one group, so near duplicates never straddle splits
    and, under author and time, neither do their authors' videos. Under time a cluster with a member before
    `cut` is train as a whole. A joined group is hashed under the smallest id of the groups it joins, so
    a group that no cluster touches keeps the split it had without clusters.
    """
    check_split_method(method, cut)
    check_ratios(ratios)
    check_seed(seed)
    if cut is not None and not isinstance(cut, datetime):
        raise TkdsError(f"cut {ids.preview(cut)}: give a datetime (--cut-date YYYY-MM-DD)")
    if cut is not None and cut.tzinfo is not None:
        cut = cut.astimezone(UTC).replace(tzinfo=None)  # create times are compared in naive UTC
    if not isinstance(candidates, list | tuple):
        raise TkdsError(f"candidates {ids.preview(candidates)}: give a list of Candidate")
    if clusters is not None and not isinstance(clusters, Mapping):
        raise TkdsError(f"clusters {ids.preview(clusters)}: give a mapping of video id to keeper id")
    clusters = clusters or {}
    group_of = _groups(candidates, method != "random", clusters)
    early_clusters = set()
    if method == "time":
        early_clusters = {clusters[v.id] for v in candidates if v.id in clusters and _created(v) < cut}
    values = {group: unit_hash(group, seed) for group in set(group_of.values())}
    splits = {}
    for video in candidates:
        value = values[group_of[video.id]]
        if method == "time":
            held_out = (ratios[1] + ratios[2]) or 1.0
            early = _created(video) < cut or clusters.get(video.id) in early_clusters
            splits[video.id] = (
                "train" if early else _bucket(value, (ratios[1] / held_out, 1.0), ("val", "test"))
            )
        else:
            splits[video.id] = _bucket(value, ratios, SPLITS)
    return splits


def check_split_method(method: object, cut: object) -> None:
    """`method` is one of SPLIT_METHODS, and `time` comes with a cut date."""
    if not isinstance(method, str) or method not in SPLIT_METHODS:
        raise TkdsError(f"--split-by {ids.preview(method)}: choose one of {', '.join(SPLIT_METHODS)}")
    if method == "time" and cut is None:
        raise TkdsError("--split-by time needs --cut-date YYYY-MM-DD")


def _created(video: Candidate) -> datetime:
    return datetime.fromtimestamp(video.create_time or 0, UTC).replace(tzinfo=None)


def _groups(candidates: list[Candidate], by_author: bool, clusters: Mapping[str, str]) -> dict[str, str]:
    """video id → the id its split is hashed from: its author or itself, joined through clusters."""
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def root(node: tuple[str, str]) -> tuple[str, str]:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    own = {}  # the group each video has without clusters: ("author", id) or ("video", id)
    for video in candidates:
        author_known = by_author and ids.is_valid_id(video.author_id)
        own[video.id] = ("author", video.author_id) if author_known else ("video", video.id)
        if video.id in clusters:
            parent[root(own[video.id])] = root(("cluster", clusters[video.id]))
    smallest: dict[tuple[str, str], str] = {}
    for node in own.values():
        top = root(node)
        smallest[top] = min(smallest.get(top, node[1]), node[1])
    return {video_id: smallest[root(node)] for video_id, node in own.items()}
