"""The indexed near-duplicate search against brute force, dedupe's clusters, splits that keep them whole."""

from __future__ import annotations

import json
import random
import shutil
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pytest

from tkds.collector.importer import import_captures
from tkds.collector.media import MediaResult
from tkds.collector.store import Store
from tkds.dataset.build import ShardParams, build_shards
from tkds.dataset.dedupe import duplicate_clusters
from tkds.dataset.framehash import NEAR_DUPLICATE_BITS, hash_distance, near_duplicate_pairs
from tkds.dataset.select import Candidate
from tkds.dataset.split import SPLITS, assign_splits
from tkds.errors import TkdsError


def brute_force_pairs(hashes: dict[str, str], threshold: float) -> list[tuple[str, str]]:
    """The rule, pair by pair: first frames within 2 * threshold bits, then `hash_distance`."""
    ids = [key for key, value in hashes.items() if value]
    first = np.array([int(hashes[key][:16], 16) for key in ids], dtype=np.uint64)
    pairs = []
    for i in range(len(ids) - 1):
        close = np.bitwise_count(first[i + 1 :] ^ first[i]) <= 2 * threshold
        for j in np.flatnonzero(close) + i + 1:
            if hash_distance(hashes[ids[i]], hashes[ids[j]]) <= threshold:
                pairs.append((ids[i], ids[j]))
    return pairs


def _hex(words: np.ndarray) -> str:
    return words.astype(">u8").tobytes().hex()


def _random_words(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.integers(0, 2**64 - 1, size=count, dtype=np.uint64, endpoint=True)


def _flip(rng: np.random.Generator, words: np.ndarray, bits_per_word: list[int] | np.ndarray) -> np.ndarray:
    """A copy of `words` with exactly bits_per_word[i] distinct random bits of word i flipped."""
    counts = np.asarray(bits_per_word)
    order = np.argsort(rng.random((len(words), 64)), axis=1).astype(np.uint64)  # bits in random order
    bits = np.where(np.arange(64) < counts[:, None], np.uint64(1) << order, np.uint64(0))
    return words ^ np.bitwise_or.reduce(bits, axis=1)


def _hashes_with_planted_pairs(seed: int, count: int) -> dict[str, str]:
    """Random hashes of 1-16 words; a tenth are copies of others at distances around the threshold."""
    rng = np.random.default_rng(seed)
    words = {f"{10**17 + i}": _random_words(rng, int(rng.integers(1, 17))) for i in range(count * 9 // 10)}
    originals = list(words)
    shared_intro = _random_words(rng, 1)  # many videos opening on one frame (a black intro, say)
    for i in range(count - len(words)):
        original = words[originals[int(rng.integers(len(originals)))]]
        frames = len(original)
        first_bits = int(rng.integers(0, 11))  # 0-10: across the first-frame bound of 8
        copy = _flip(rng, original, [first_bits] + [int(rng.integers(0, 9)) for _ in range(frames - 1)])
        if i % 7 == 0:
            copy = copy[: int(rng.integers(1, frames + 1))]  # a shorter cut: compared over its frames
        elif i % 7 == 1:
            copy = np.concatenate([copy, _random_words(rng, int(rng.integers(1, 4)))])
        elif i % 7 == 2:
            copy = np.concatenate([shared_intro, _random_words(rng, int(rng.integers(0, 3)))])
        words[f"{2 * 10**17 + i}"] = copy
    hashes = {key: _hex(value) for key, value in words.items()}
    keys = list(hashes)
    hashes[keys[5]] = hashes[keys[6]]  # an identical hash
    hashes[f"{3 * 10**17}"] = ""  # no hash: skipped
    return hashes


@pytest.mark.parametrize("threshold", [NEAR_DUPLICATE_BITS, 2.5, 0.0, 6.0])
def test_indexed_search_returns_exactly_the_brute_force_pairs(threshold: float) -> None:
    hashes = _hashes_with_planted_pairs(seed=int(threshold * 10), count=5000)
    expected = brute_force_pairs(hashes, threshold)
    assert len(expected) > 50  # the planted pairs give the comparison positives on both sides of the bound
    assert near_duplicate_pairs(hashes, threshold) == expected


def test_pairs_at_the_bounds_and_bad_hashes() -> None:
    rng = np.random.default_rng(7)
    base = _random_words(rng, 4)
    hashes = {
        "1": _hex(base),
        "2": _hex(_flip(rng, base, [8, 4, 4, 4])),  # first frame at its bound, mean 5 > 4
        "3": _hex(_flip(rng, base, [8, 2, 3, 3])),  # mean exactly 4: a pair with "1"
        "4": _hex(_flip(rng, base, [9, 0, 0, 0])),  # mean 2.25, but first frames 9 bits apart
    }
    assert near_duplicate_pairs(hashes) == brute_force_pairs(hashes, NEAR_DUPLICATE_BITS) == [("1", "3")]
    assert near_duplicate_pairs(hashes, float("nan")) == near_duplicate_pairs(hashes, -1.0) == []
    for bad in ("xyz0000000000000", "0123", "00000000 0000000"):
        with pytest.raises(TkdsError, match=r"video 9: frame hash .* is not 16-digit hex words"):
            near_duplicate_pairs({**hashes, "9": bad})


def _candidate(video_id: str, author: str | None, created: int) -> Candidate:
    return Candidate(
        id=video_id, author_id=author, author_unique_id=None, music_id=None, music_title=None,
        description=None, create_time=created, source=None, path=Path("x"), sha256=f"sha-{video_id}",
        bytes=1, stats={}, author_stats={}, hashtags=[],
    )  # fmt: skip


@pytest.mark.parametrize("count", [2_000, 20_000])
def test_dedupe_finds_planted_near_duplicates_with_precision_and_recall_one(count: int) -> None:
    """Copies a few bits per frame off (a re-encode) join their original; copies 6 bits off don't."""
    rng = np.random.default_rng(count)
    words = {str(10**12 + i): _random_words(rng, int(rng.integers(8, 17))) for i in range(count)}
    truth: dict[str, str] = {}  # copy -> its original
    for n, original in enumerate(rng.choice(list(words), size=count // 20, replace=False)):
        frames = len(words[original])
        for c in range(int(rng.integers(1, 4))):
            copy = f"{2 * 10**12 + 10 * n + c}"
            words[copy] = _flip(rng, words[original], list(rng.integers(0, 4, size=frames)))
            truth[copy] = str(original)
        words[f"{3 * 10**12 + n}"] = _flip(rng, words[original], [6] * frames)  # a different video
    hashes = {key: _hex(value) for key, value in words.items()}
    hashes[f"{4 * 10**12}"] = hashes[f"{4 * 10**12 + 1}"] = hashes[str(10**12)]  # identical hashes
    truth.update({f"{4 * 10**12}": str(10**12), f"{4 * 10**12 + 1}": str(10**12)})
    videos = [_candidate(key, str(int(rng.integers(1, count // 3))), 1_700_000_000) for key in hashes]

    clusters = duplicate_clusters(videos, hashes)

    def together(mapping: dict[str, str]) -> set[frozenset[str]]:
        groups: dict[str, set[str]] = {}
        for member, keeper in mapping.items():
            groups.setdefault(keeper, {keeper}).add(member)
        return {frozenset((a, b)) for group in groups.values() for a in group for b in group if a < b}

    found, planted = together(clusters), together(truth)
    true_positives = len(found & planted)
    assert (true_positives / len(found), true_positives / len(planted)) == (1.0, 1.0)


def _world(rng: random.Random) -> tuple[list[Candidate], dict[str, str]]:
    """Videos by a few hundred authors (some unknown), and duplicate clusters across authors."""
    authors = [str(a) for a in range(rng.randrange(50, 300))] + [None, "not-an-id"]
    videos = [
        _candidate(str(10**10 + i), rng.choice(authors), rng.randrange(1_600_000_000, 1_800_000_000))
        for i in range(rng.randrange(500, 2000))
    ]
    clusters: dict[str, str] = {}
    for _ in range(rng.randrange(10, 100)):
        members = rng.sample(videos, rng.randrange(2, 6))
        keeper = min(members, key=lambda v: v.create_time).id
        clusters.update({v.id: keeper for v in members if v.id not in clusters})
    return videos, clusters


@pytest.mark.parametrize("seed", range(6))
def test_no_cluster_and_no_author_straddles_splits(seed: int) -> None:
    rng = random.Random(seed)
    videos, clusters = _world(rng)
    cut = datetime(2023, 1, 1)
    for method in ("author", "random", "time"):
        splits = assign_splits(videos, method, (0.6, 0.2, 0.2), seed, cut, clusters)
        assert set(splits) == {v.id for v in videos}
        by_cluster: dict[str, set[str]] = {}
        for member, keeper in clusters.items():
            by_cluster.setdefault(keeper, set()).add(splits[member])
        assert all(len(names) == 1 for names in by_cluster.values()), method
        by_author: dict[str | None, set[str]] = {}
        for video in videos:
            if video.author_id not in (None, "not-an-id") and (
                method == "author" or splits[video.id] != "train"
            ):
                by_author.setdefault(video.author_id, set()).add(splits[video.id])
        if method != "random":  # under time: no author in both val and test
            assert all(len(names) == 1 for names in by_author.values()), method
        if method == "time":  # a cluster's later copies follow its first upload into train
            early = {clusters[v.id] for v in videos if v.id in clusters and v.create_time < cut.timestamp()}
            assert all(splits[v.id] == "train" for v in videos if clusters.get(v.id) in early)

        # groups no cluster touches keep the split they have without clusters
        plain = assign_splits(videos, method, (0.6, 0.2, 0.2), seed, cut)
        touched = {v.author_id if method != "random" else v.id for v in videos if v.id in clusters}
        untouched = [v for v in videos if (v.author_id if method != "random" else v.id) not in touched]
        assert untouched and all(splits[v.id] == plain[v.id] for v in untouched if v.author_id), method


def test_a_build_puts_a_re_uploaders_videos_in_the_split_of_the_video_it_copied(
    synth_db: Path, small_corpus: Path, tmp_path: Path
) -> None:
    """A near copy (close frame hashes, other bytes) by another author is dropped, and ties that author's
    own videos to the original's split."""
    db = tmp_path / "tk.duckdb"
    shutil.copy(synth_db, db)
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "SELECT v.id, v.author_id, m.path FROM videos v JOIN media m ON m.video_id = v.id ORDER BY v.id"
        ).fetchall()
    (original, author, path), (other, _, other_path) = rows[0], next(r for r in rows if r[1] != rows[0][1])

    def alone(author_id: str) -> str:  # the split of an author's videos when no cluster ties them
        return assign_splits([_candidate("1", author_id, 0)], "author")["1"]

    copycat = next(  # one whose own split differs from the original author's: the tie must move it
        c for c in (str(6999999999999999000 + i) for i in range(100)) if alone(c) != alone(author)
    )
    copy_id, own_id = "7999999999999999998", "7999999999999999999"
    for new_id, source in ((copy_id, original), (own_id, other)):
        item = json.loads((small_corpus / "items" / f"{source}.json").read_text())
        item.update(id=new_id, createTime=item["createTime"] + 86400)
        item["author"] = {**item["author"], "id": copycat, "uniqueId": "copycat"}
        (tmp_path / f"{new_id}.json").write_text(json.dumps(item))
    import_captures(db, [tmp_path / f"{copy_id}.json", tmp_path / f"{own_id}.json"], progress=False)
    rng = np.random.default_rng(1)
    frames = _random_words(rng, 4)
    with Store.open(db) as store:
        store.record_media(MediaResult(copy_id, "ok", path=path, sha256="re-encoded", bytes=1))
        store.record_media(MediaResult(own_id, "ok", path=other_path, sha256="its-own", bytes=1))
        for video_id, words in ((original, frames), (copy_id, _flip(rng, frames, [2, 1, 3, 0]))):
            store.db.execute("UPDATE media SET frame_hash = ? WHERE video_id = ?", [_hex(words), video_id])

    out = tmp_path / "shards"
    build_shards(db, out, ShardParams(size=0), progress=False)

    with duckdb.connect(str(db), read_only=True) as con:
        rows = dict(con.execute("SELECT video_id, coalesce(split, status) FROM dataset_samples").fetchall())
    assert rows[copy_id] == "duplicate"
    assert rows[own_id] == rows[original] and rows[own_id] in SPLITS
