"""The shard builder's planning path at scale: a synthetic store of thousands of rows (benchmarks/
shard_scale.py's, the real schema) gives the same splits, shards and manifest as the builder gave before
its selection was streamed and its steps split, and its limits are one-line errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb
import pytest

from benchmarks.shard_scale import synthetic_store
from tkds.dataset import select
from tkds.dataset.build import ShardParams, build_shards
from tkds.errors import TkdsError

# `_outputs` of 3,000 rows, by author and by random split, as the builder wrote them before its selection
# was streamed (tkds 9c190a3)
BEFORE = {
    "author": "de64fe0f2f1cc30e86b336fe7e0d5b7b4908993970d5342f1811c96d1f02cb97",
    "random": "9fea5b227c1849152c766d376849a501fdd35c4f6d6ee0b83c0e8addb3ad50e2",
}


def _store(tmp_path: Path, videos: int) -> Path:
    clip = tmp_path / "pooled.mp4"
    clip.write_bytes(bytes(range(256)) * 16)  # fixed bytes: the shards' sha256s are part of the digest
    db = tmp_path / "store.duckdb"
    synthetic_store(db, videos, seed=0, clip=clip)
    return db


def _outputs(db: Path, out: Path) -> tuple[str, dict]:
    """A digest of what a build decided: every shard's sha256 (its samples' json, order and bytes), the
    counts, labels and failures in the manifest, and every dataset_samples row; and the manifest."""
    manifest = json.loads((out / "dataset.json").read_text())
    with duckdb.connect(str(db), read_only=True) as connection:
        rows = connection.execute(
            "SELECT video_id, split, shard, status, error FROM dataset_samples WHERE dataset = ? ORDER BY 1",
            [str(out.resolve())],
        ).fetchall()
        hashes = connection.execute(
            "SELECT video_id, duplicate_cluster FROM media WHERE duplicate_cluster IS NOT NULL ORDER BY 1"
        ).fetchall()
    decided = {
        "shards": manifest["shards"],
        "counts": manifest["counts"],
        "failures": manifest["failures"],
        "label_names": manifest["label_names"],
        "samples": rows,
        "clusters": hashes,
    }
    return hashlib.sha256(json.dumps(decided, sort_keys=True).encode()).hexdigest(), manifest


def test_a_store_of_thousands_builds_as_before(tmp_path: Path) -> None:
    db = _store(tmp_path, 3000)
    summary = build_shards(db, tmp_path / "author", ShardParams(size=0), progress=False)
    digest, manifest = _outputs(db, tmp_path / "author")
    # taken down (every 211th), failed media (every 101st) and the invalid id '../1' are not selected
    assert manifest["counts"]["selected"] == summary.selected == 2957
    assert [reason.split(":")[0] for reason in summary.refused] == ["invalid_id"]
    assert manifest["counts"]["duplicates"] == 132  # the planted near duplicates and exact copies
    assert set(summary.steps) == set(summary.steps_cpu) == {
        "select", "fingerprint", "prepare", "dedupe", "split", "write", "record", "manifest",
    }  # fmt: skip
    assert digest == BEFORE["author"]
    params = ShardParams(size=0, split_by="random", seed=3, samples_per_shard=100)
    build_shards(db, tmp_path / "random", params, progress=False)
    assert _outputs(db, tmp_path / "random")[0] == BEFORE["random"]


def test_a_selection_past_the_memory_limit_is_one_line(tmp_path: Path, monkeypatch) -> None:
    """Selecting more videos than the free memory can plan is refused early, naming --where, and OUT is
    not claimed, so the same command with a narrower --where can use it."""
    db = _store(tmp_path, 3000)
    free = select.RESERVED_BYTES + 1000 * select.BYTES_PER_VIDEO
    monkeypatch.setattr(select, "available_memory", lambda: free)
    with pytest.raises(TkdsError, match=r"more than 1,000 videos selected.*--where") as refused:
        build_shards(db, tmp_path / "out", ShardParams(size=0), progress=False)
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "out" / ".build.json").exists()
    where = "v.create_time < TIMESTAMP '2023-11-14 22:13:20' + INTERVAL 900 MINUTE"  # the first 900
    summary = build_shards(db, tmp_path / "out", ShardParams(size=0, where=where), progress=False)
    assert 800 < summary.selected <= 900
