"""`tkds shard`: real DuckDB in, ffmpeg, real tars out; splits, dedupe, edge-case media, resume, verify."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import duckdb
import pytest
import webdataset as wds

from tkds.collector.importer import import_captures
from tkds.collector.media import MediaResult
from tkds.collector.store import Store
from tkds.dataset.build import ShardParams, build_shards, verify_shards
from tkds.dataset.loader import load_eval_clips
from tkds.dataset.select import Candidate
from tkds.dataset.split import assign_splits, parse_ratios
from tkds.errors import TkdsError

from .conftest import SHARED_FIXTURES

TKDS = [sys.executable, "-m", "tkds"]


def tkds(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*TKDS, *args], capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"tkds {' '.join(args)} failed: {result.stderr}")
    return result


def samples(shards: Path, split: str) -> list[dict]:
    index = json.loads((shards / f"{split}.json").read_text())
    urls = [str(shards / entry["url"]) for entry in index["shardlist"]]
    return list(wds.WebDataset(urls, shardshuffle=False, empty_check=False)) if urls else []


def copy_db(db: Path, tmp_path: Path) -> Path:
    target = tmp_path / "tk.duckdb"
    shutil.copy(db, target)
    return target


def test_shards_layout_index_manifest_and_card(built_shards: Path, synth_db: Path) -> None:
    manifest = json.loads((built_shards / "dataset.json").read_text())
    assert manifest["counts"]["kept"] == 12 and manifest["counts"]["failed"] == 0
    assert manifest["label_column"] == "category"
    seen = []
    for split in ("train", "val", "test"):
        index = json.loads((built_shards / f"{split}.json").read_text())
        assert index["wids_version"] == 1 and index["name"] == f"tkds-{split}"
        for entry in index["shardlist"]:
            shard = built_shards / entry["url"]
            assert manifest["shards"][entry["url"]]["sha256"] == entry["sha256"]
            stats = json.loads(shard.with_name(shard.name.replace(".tar", "_stats.json")).read_text())
            assert stats["count"] == entry["nsamples"] <= 3
        rows = samples(built_shards, split)
        assert sum(e["nsamples"] for e in index["shardlist"]) == len(rows) == manifest["counts"][split]
        for row in rows:
            meta = json.loads(row["json"])
            assert row["__key__"] == meta["id"] and meta["split"] == split
            assert {"mp4", "flac", "json", "jpg"} <= set(row)
            assert meta["labels"]["category"] in manifest["label_names"]
            assert meta["stats"]["likes"] is not None and meta["author_stats"]["followers"] is not None
            assert meta["url"] == f"https://www.tiktok.com/@{meta['author_unique_id']}/video/{meta['id']}"
            assert min(meta["width"], meta["height"]) == 128  # SynthTok's 144 px short side, scaled down
            seen.append(meta["id"])
    assert len(seen) == len(set(seen)) == 12
    card = (built_shards / "README.md").read_text()
    for heading in (
        "## Composition",
        "## Collection process",
        "## Known biases",
        "## Maintenance and takedown",
    ):
        assert heading in card
    assert "by **author**" in card
    with duckdb.connect(str(synth_db), read_only=True) as db:
        rows = db.execute(
            "SELECT status, count(*) FROM dataset_samples WHERE dataset = ? GROUP BY 1",
            [str(built_shards.resolve())],
        ).fetchall()
        assert dict(rows) == {"ok": 12}
        assert db.execute("SELECT count(*) FROM media WHERE frame_hash IS NULL").fetchone()[0] == 0


def test_tar_and_webdataset_read_the_shards(built_shards: Path) -> None:
    shard = next((built_shards / "train").glob("*.tar"))
    listing = subprocess.run(
        ["tar", "tf", str(shard)], capture_output=True, text=True, check=True
    ).stdout.split()
    keys = [name.split(".")[0] for name in listing]
    assert listing[0].endswith(".mp4") and listing[-1].endswith(".jpg")
    assert keys == sorted(keys, key=keys.index)  # each sample's members are contiguous
    with tarfile.open(shard) as tar:
        probe = tar.extractfile(listing[0]).read()
    assert probe[4:8] == b"ftyp"


def test_a_rerun_reuses_everything(built_shards: Path, synth_db: Path, small_corpus: Path) -> None:
    before = json.loads((built_shards / "dataset.json").read_text())
    params = ShardParams(
        samples_per_shard=3, size=128, labels=str(small_corpus / "corpus.json"), ratios=(0.5, 0.25, 0.25)
    )
    summary = build_shards(synth_db, built_shards, params, progress=False)
    assert summary.shards_reused == summary.shards == len(before["shards"])
    assert json.loads((built_shards / "dataset.json").read_text())["shards"] == before["shards"]


def test_the_collectors_stream_choice_spares_a_second_probe(
    synth_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_probe(source: Path) -> dict:
        raise AssertionError(f"ffprobe ran again on {source}")

    monkeypatch.setattr("tkds.dataset.transcode.probe", no_probe)
    summary = build_shards(
        copy_db(synth_db, tmp_path), tmp_path / "out", ShardParams(size=64), progress=False
    )
    assert summary.prepared == 12 and not summary.failures


def test_other_settings_in_the_same_folder_are_refused(built_shards: Path, synth_db: Path) -> None:
    with pytest.raises(TkdsError, match=r"other settings .*size"):
        build_shards(synth_db, built_shards, ShardParams(size=64), progress=False)


def test_duplicates_takedowns_and_where(synth_db: Path, small_corpus: Path, tmp_path: Path) -> None:
    db = copy_db(synth_db, tmp_path)
    with Store.open(db) as store:
        original, second, third = (row[0] for row in store.db.execute(
            "SELECT video_id, path FROM media ORDER BY video_id LIMIT 3").fetchall())  # fmt: skip
        source = Path(store.db.execute("SELECT path FROM media WHERE video_id = ?", [original]).fetchone()[0])
        # a re-upload by someone else: re-encoded at another size and quality
        copy = tmp_path / "copy.mp4"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-i", str(source), "-vf", "scale=180:320", "-crf", "30", str(copy)],
            check=True,
        )
        item = json.loads((small_corpus / "items" / f"{original}.json").read_text())
        item.update(id="7999999999999999999", createTime=item["createTime"] + 86400)
        item["author"] = {**item["author"], "id": "6999999999999999999", "uniqueId": "copycat"}
        (tmp_path / "item.json").write_text(json.dumps(item))
        store.db.execute("INSERT INTO takedown VALUES (?, 'creator request', now())", [second])
    import_captures(db, [tmp_path / "item.json"], progress=False)
    with Store.open(db) as store:
        store.record_media(MediaResult("7999999999999999999", "ok", path=str(copy), sha256="x", bytes=1))
    out = tmp_path / "shards"
    summary = build_shards(db, out, ShardParams(size=96, where=f"v.id <> '{third}'"), progress=False)
    assert summary.selected == 12 - 2 + 1 and summary.duplicates == 1
    kept = {json.loads(r["json"])["id"] for split in ("train", "val", "test") for r in samples(out, split)}
    assert original in kept and "7999999999999999999" not in kept
    assert second not in kept and third not in kept
    with duckdb.connect(str(db), read_only=True) as con:
        cluster = con.execute(
            "SELECT video_id, duplicate_cluster FROM media WHERE duplicate_cluster IS NOT NULL ORDER BY 1"
        ).fetchall()
        assert cluster == [(original, original), ("7999999999999999999", original)]
        status = con.execute(
            "SELECT status, error FROM dataset_samples WHERE video_id = '7999999999999999999'"
        ).fetchone()
        assert status == ("duplicate", f"duplicate of {original}")


def _candidates(rng: random.Random, count: int, authors: int) -> list[Candidate]:
    return [
        Candidate(
            id=str(7_000_000_000_000_000_000 + rng.randrange(10**15)),
            author_id=str(rng.randrange(authors)), author_unique_id=None,
            music_id=None, music_title=None, description=None,
            create_time=rng.randrange(1_600_000_000, 1_800_000_000), source=None, path=Path("x"),
            sha256=str(i), bytes=1, stats={}, author_stats={}, hashtags=[],
        )
        for i in range(count)
    ]  # fmt: skip


@pytest.mark.parametrize("seed", range(5))
def test_author_splits_are_disjoint_stable_and_near_the_ratios(seed: int) -> None:
    rng = random.Random(seed)
    videos = _candidates(rng, 3000, authors=rng.randrange(200, 600))
    splits = assign_splits(videos, "author", (0.7, 0.2, 0.1), seed=seed)
    owner: dict[str, str] = {}
    for video in videos:
        assert owner.setdefault(video.author_id, splits[video.id]) == splits[video.id]
    shares = [sum(s == name for s in splits.values()) / len(videos) for name in ("train", "val", "test")]
    assert shares == pytest.approx([0.7, 0.2, 0.1], abs=0.08)
    more = _candidates(rng, 500, authors=800)
    grown = assign_splits(videos + more, "author", (0.7, 0.2, 0.1), seed=seed)
    assert all(grown[video.id] == splits[video.id] for video in videos)


def test_random_and_time_splits() -> None:
    videos = _candidates(random.Random(1), 2000, authors=5)
    random_splits = assign_splits(videos, "random", (0.8, 0.1, 0.1), seed=3)
    assert len({random_splits[v.id] for v in videos if v.author_id == "0"}) == 3
    from datetime import datetime

    cut = datetime(2025, 1, 1)
    timed = assign_splits(videos, "time", (0.8, 0.1, 0.1), seed=3, cut=cut)
    for video in videos:
        assert (timed[video.id] == "train") == (video.create_time < cut.timestamp())
    with pytest.raises(TkdsError, match="needs --cut-date"):
        assign_splits(videos, "time")


@pytest.mark.parametrize("text", ["0.8,0.1", "0.8,0.3,0.1", "a,b,c", "1.2,-0.1,-0.1"])
def test_bad_ratios_are_refused(text: str) -> None:
    with pytest.raises(TkdsError, match="--ratios"):
        parse_ratios(text)


def test_cli_errors_are_one_line(synth_db: Path, tmp_path: Path) -> None:
    empty = tkds(
        "shard", "--db", str(synth_db), "--out", str(tmp_path / "a"), "--where", "v.id = 'none'", check=False
    )
    assert empty.returncode == 1
    assert empty.stderr.strip().splitlines()[-1].startswith("tkds: error: no videos selected")
    assert not list((tmp_path / "a").glob("*/*.tar"))
    ratios = tkds(
        "shard", "--db", str(synth_db), "--out", str(tmp_path / "b"), "--ratios", "0.5,0.5,0.5", check=False
    )
    assert ratios.returncode == 1 and "summing to 1" in ratios.stderr


def test_verify_finds_a_changed_shard(built_shards: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(built_shards, copy)
    assert verify_shards(copy, progress=False) == []
    assert "match dataset.json" in " ".join(tkds("shard", "--out", str(copy), "--verify").stderr.split())
    shard = next((copy / "val").glob("*.tar"))
    data = bytearray(shard.read_bytes())
    data[700] ^= 0xFF
    shard.write_bytes(bytes(data))
    problems = verify_shards(copy, progress=False)
    assert problems == [f"val/{shard.name}: sha256 differs from the manifest (corrupt or changed)"]
    assert tkds("shard", "--out", str(copy), "--verify", check=False).returncode == 1


@pytest.mark.slow
def test_real_media_edge_cases(tmp_path: Path) -> None:
    """Every file in shared/fixtures/media is sharded as its README says, and a corrupt one is rejected."""
    media = SHARED_FIXTURES / "media"
    if not media.is_dir():
        pytest.skip(f"media fixtures not found at {media}")
    files = sorted(p for p in media.iterdir() if p.suffix != ".md")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(files[0].read_bytes()[:3000])
    db = tmp_path / "tk.duckdb"
    names = {}
    with Store.open(db) as store:
        for number, path in enumerate([*files, corrupt]):
            video_id = str(7100000000000000000 + number)
            names[video_id] = path.name
            store.db.execute(
                "INSERT INTO videos (id, author_id, create_time) VALUES (?, ?, now())",
                [video_id, str(number)],
            )
            store.record_media(MediaResult(video_id, "ok", path=str(path), sha256=path.name, bytes=1))
    out = tmp_path / "shards"
    summary = build_shards(db, out, ShardParams(ratios=(1.0, 0.0, 0.0), size=128), progress=False)
    assert next(iter(summary.failures.values())).startswith("undecodable")
    assert names[next(iter(summary.failures))] == "corrupt.mp4"
    rows = {names[json.loads(r["json"])["id"]]: r for r in samples(out, "train")}
    meta = {name: json.loads(row["json"]) for name, row in rows.items()}
    assert set(rows) == {path.name for path in files}
    assert meta["landscape_h264_mp3_chaplin.mp4"]["width"] > meta["landscape_h264_mp3_chaplin.mp4"]["height"]
    assert meta["multistream_nasa.mp4"]["source"]["video_stream"] == 3  # the larger default video stream
    assert meta["multistream_nasa.mp4"]["source"]["audio_stream"] == 4  # the 16 kHz default audio stream
    assert (
        meta["silent_audio_track_car.mp4"]["audio_silent"] and meta["silent_audio_track_car.mp4"]["has_audio"]
    )
    assert not meta["landscape_h264_mp3_chaplin.mp4"]["audio_silent"]
    assert (
        not meta["mkv_no_audio_sign_again.mkv"]["has_audio"]
        and "flac" not in rows["mkv_no_audio_sign_again.mkv"]
    )
    assert meta["no_duration.webm"]["duration_s"] == pytest.approx(4.9, abs=0.2)
    for name, row in rows.items():
        assert row["mp4"][4:8] == b"ftyp", name
        assert min(meta[name]["width"], meta[name]["height"]) == 128, name
    with duckdb.connect(str(db), read_only=True) as con:
        failed = con.execute("SELECT video_id, error FROM dataset_samples WHERE status = 'failed'").fetchall()
    assert [names[row[0]] for row in failed] == ["corrupt.mp4"] and failed[0][1].startswith("undecodable")
    loaded = {names[e["key"]]: e for e in load_eval_clips(out, "train", clips=2, frames=8, size=64)}
    assert set(loaded) == set(rows)
    assert not loaded["mkv_no_audio_sign_again.mkv"]["has_audio"]
    assert bool((loaded["mkv_no_audio_sign_again.mkv"]["audio"] == 0).all())
    assert loaded["landscape_h264_mp3_chaplin.mp4"]["has_audio"]


@pytest.mark.slow
def test_kill_9_then_rerun_gives_the_same_shards(synth_db: Path, tmp_path: Path) -> None:
    args = ["shard", "--db", str(copy_db(synth_db, tmp_path)), "--samples-per-shard", "2", "--size", "96"]
    clean = tmp_path / "clean"
    tkds(*args, "--out", str(clean))
    killed = tmp_path / "killed"
    process = subprocess.Popen([*TKDS, *args, "--out", str(killed)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(killed.glob("*/*_stats.json")) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "dataset.json").exists()
    tkds(*args, "--out", str(killed))
    first, second = (json.loads((root / "dataset.json").read_text()) for root in (clean, killed))
    assert first["shards"] == second["shards"]
    assert not list(killed.rglob("*.partial"))
