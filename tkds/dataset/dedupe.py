"""Dedupe: exact (same sha256) and near duplicates (close frame hashes), in clusters with one keeper."""

from __future__ import annotations

from tkds.dataset.framehash import near_duplicate_pairs
from tkds.dataset.select import Candidate


def _keeper_order(video: Candidate) -> tuple:
    return (video.create_time or 0, video.id)  # the earliest upload is the original


def duplicate_clusters(candidates: list[Candidate], hashes: dict[str, str]) -> dict[str, str]:
    """video id → the id of its cluster's keeper, for every video in a cluster of two or more.

    Exact copies share a sha256; near duplicates have frame hashes within `NEAR_DUPLICATE_BITS`.
    Clusters are the connected components of both relations (union-find).
    """
    parent = {video.id: video.id for video in candidates}

    def root(node: str) -> str:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    by_sha: dict[str, str] = {}
    pairs = near_duplicate_pairs(hashes)
    for video in candidates:
        pairs.append((by_sha.setdefault(video.sha256, video.id), video.id))
    for a, b in pairs:
        parent[root(a)] = root(b)
    members: dict[str, list[Candidate]] = {}
    for video in candidates:
        members.setdefault(root(video.id), []).append(video)
    clusters = {}
    for group in members.values():
        if len(group) > 1:
            keeper = min(group, key=_keeper_order).id
            clusters.update({video.id: keeper for video in group})
    return clusters
