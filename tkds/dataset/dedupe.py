"""Dedupe: exact (same sha256) and near duplicates (close frame hashes), in clusters with one keeper."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from tkds import ids
from tkds.dataset.framehash import near_duplicate_pairs
from tkds.errors import TkdsError

if TYPE_CHECKING:  # select imports duckdb; dedupe itself needs only the candidates' fields
    from tkds.dataset.select import Candidate


def _keeper_order(video: Candidate) -> tuple:
    return (video.create_time or 0, video.id)  # the earliest upload is the original


def duplicate_clusters(candidates: list[Candidate], hashes: dict[str, str]) -> dict[str, str]:
    """video id → the id of its cluster's keeper, for every video in a cluster of two or more.

    Exact copies share a sha256; near duplicates have frame hashes within `NEAR_DUPLICATE_BITS`
    (`near_duplicate_pairs`, an indexed search). Clusters are the connected components of both relations
    (union-find).
    """
    if not isinstance(candidates, list | tuple):
        raise TkdsError(f"candidates {ids.preview(candidates)}: give a list of Candidate")
    if not isinstance(hashes, Mapping):
        raise TkdsError(f"hashes {ids.preview(hashes)}: give a mapping of video id to frame hash")
    bad = next((key for key, value in hashes.items() if not isinstance(value, str | None)), None)
    if bad is not None:
        raise TkdsError(
            f"video {ids.preview(bad)}: frame hash {ids.preview(hashes[bad])} is not a string of hex words"
        )
    parent = {video.id: video.id for video in candidates}

    def root(node: str) -> str:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    def join(a: str, b: str) -> None:
        parent[root(a)] = root(b)

    by_sha: dict[str, str] = {}
    for video in candidates:
        join(by_sha.setdefault(video.sha256, video.id), video.id)
    # equal hashes are at distance 0 from each other and equally far from all others: one of them searches
    by_hash: dict[str, str] = {}
    for video_id, value in hashes.items():
        if value and video_id in parent:
            join(by_hash.setdefault(value, video_id), video_id)
    for a, b in near_duplicate_pairs({video_id: value for value, video_id in by_hash.items()}):
        join(a, b)
    members: dict[str, list[Candidate]] = {}
    for video in candidates:
        members.setdefault(root(video.id), []).append(video)
    clusters = {}
    for group in members.values():
        if len(group) > 1:
            keeper = min(group, key=_keeper_order).id
            clusters.update({video.id: keeper for video in group})
    return clusters
