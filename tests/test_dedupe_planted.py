"""The shard builder's dedupe against SynthTok's planted near duplicates: precision and recall 1.0.

SynthTok lists every re-upload it plants (a re-encode, an upscale, a crop, a watermark) in its corpus
card. The corpus goes into DuckDB as a collection would (item JSON plus media), `build_shards` dedupes
it, and the clusters it writes to media.duplicate_cluster must be exactly the planted ones.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import duckdb
import pytest

from tkds.collector.importer import import_captures
from tkds.dataset.build import ShardParams, build_shards
from tkds.synth import generate
from tkds.synth.duplicates import KINDS


def _pairs(clusters: dict[str, list[str]]) -> set[tuple[str, str]]:
    return {pair for members in clusters.values() for pair in itertools.combinations(sorted(members), 2)}


def _planted_clusters(near_duplicates: list[dict]) -> dict[str, list[str]]:
    """Each planted source with its re-uploads: sources are originals, so this is one level deep."""
    clusters: dict[str, list[str]] = {}
    for planted in near_duplicates:
        clusters.setdefault(planted["of"], [planted["of"]]).append(planted["id"])
    return clusters


@pytest.mark.slow
@pytest.mark.parametrize(("videos", "seed", "share"), [(40, 3, 0.25), (120, 6, 0.15)])
def test_dedupe_finds_exactly_the_planted_near_duplicates(
    tmp_path: Path, videos: int, seed: int, share: float
) -> None:
    corpus = tmp_path / "corpus"
    generate(corpus, videos, seed=seed, seconds=(2.0, 3.0), near_duplicates=share, workers=2, progress=False)
    card = json.loads((corpus / "corpus.json").read_text())
    planted = card["near_duplicates"]
    assert {row["kind"] for row in planted} == set(KINDS), "every kind is planted at this size"
    rows = {row["id"]: row for row in card["videos"]}
    for row in planted:  # a re-upload: another post, later than its source, of the source's category
        assert rows[row["id"]]["create_time"] > rows[row["of"]]["create_time"]
        assert rows[row["id"]]["category"] == rows[row["of"]]["category"]

    db = tmp_path / "tk.duckdb"
    imported = import_captures(db, sorted((corpus / "items").glob("*.json")), corpus / "media", False)
    assert imported.media_ok == videos
    summary = build_shards(db, tmp_path / "shards", ShardParams(size=128), progress=False)
    assert not summary.failures

    with duckdb.connect(str(db), read_only=True) as con:
        found_rows = con.execute(
            "SELECT video_id, duplicate_cluster FROM media WHERE duplicate_cluster IS NOT NULL"
        ).fetchall()
        marked = {row[0] for row in con.execute(
            "SELECT video_id FROM dataset_samples WHERE status = 'duplicate'").fetchall()}  # fmt: skip
    found: dict[str, list[str]] = {}
    for video_id, keeper in found_rows:
        found.setdefault(keeper, []).append(video_id)
    true_pairs, found_pairs = _pairs(_planted_clusters(planted)), _pairs(found)
    hits = true_pairs & found_pairs
    precision, recall = len(hits) / max(1, len(found_pairs)), len(hits) / len(true_pairs)
    assert (precision, recall) == (1.0, 1.0), (
        f"missed {sorted(true_pairs - found_pairs)}, false {sorted(found_pairs - true_pairs)}"
    )
    assert set(found) == {row["of"] for row in planted}, "the earlier upload, the source, is kept"
    assert marked == {row["id"] for row in planted}, "every re-upload, and nothing else, is dropped"
    assert summary.duplicates == len(planted)


def test_planting_leaves_every_other_post_byte_identical(tmp_path: Path) -> None:
    options = {"seed": 3, "seconds": (1.0, 1.0), "photo_share": 0.2, "workers": 2, "progress": False}
    generate(tmp_path / "plain", 40, **options)
    generate(tmp_path / "planted", 40, near_duplicates=0.25, **options)
    card = json.loads((tmp_path / "planted" / "corpus.json").read_text())
    copies = {row["id"] for row in card["near_duplicates"]}
    assert copies
    for folder in ("items", "media", "images", "sounds"):
        for path in sorted((tmp_path / "plain" / folder).rglob("*.*")):
            twin = tmp_path / "planted" / path.relative_to(tmp_path / "plain")
            same = twin.read_bytes() == path.read_bytes()
            assert same != (path.name.split(".")[0] in copies), path.relative_to(tmp_path / "plain")
    text = (tmp_path / "planted" / "corpus.json").read_text(encoding="utf-8")
    assert json.dumps(json.loads(text), ensure_ascii=False, indent=1) == text
