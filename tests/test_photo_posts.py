"""Photo posts (TikTok's photo mode: images and a sound) from the store to the loader, and end to end."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import duckdb
import pytest
from PIL import Image
from torchcodec.decoders import AudioDecoder, VideoDecoder

from tkds.collector.media import ImageFile, MediaResult, choose_streams, duration_of, inspect, probe
from tkds.collector.parse import parse_item
from tkds.collector.store import Store
from tkds.dataset.build import ShardParams, build_shards, check_params
from tkds.dataset.loader import load_shards
from tkds.dataset.transcode import IMAGE_SECONDS, photo_duration
from tkds.errors import TkdsError
from tkds.synth import generate
from tkds.twin import serve

TKDS = [sys.executable, "-m", "tkds"]
AUTHOR = "6100000000000000001"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def item(video_id: str, music_id: str, sizes: list[tuple[int, int]] | None) -> dict:
    """A web itemStruct: a photo post with images of `sizes`, or a video when `sizes` is None."""
    post = {
        "id": video_id, "desc": f"post {video_id}", "createTime": 1_700_000_000 + int(video_id[-2:]),
        "author": {"id": AUTHOR, "uniqueId": "alice", "secUid": "s", "nickname": "Alice"},
        "music": {"id": music_id, "title": f"sound {music_id}"},
        "stats": {"diggCount": 5, "playCount": 50, "commentCount": 1, "shareCount": 0, "collectCount": 0},
        "video": {"duration": 0, "width": 0, "height": 0},
    }  # fmt: skip
    if sizes:
        post["imagePost"] = {
            "images": [
                {"imageURL": {"urlList": [f"https://p16-sign-va.tiktokcdn.com/{video_id}-{n}.jpeg"]},
                 "imageWidth": width, "imageHeight": height}
                for n, (width, height) in enumerate(sizes)
            ]
        }  # fmt: skip
    return post


def record_photo(store: Store, media: Path, video_id: str, sizes: list, sound: Path, seed: int) -> None:
    """Write a photo post's JPEGs as the collector lays them out, and record them with its sound."""
    files = []
    for position, (width, height) in enumerate(sizes):
        path = media / f"{video_id}-{position:02d}.jpg"
        Image.effect_noise((width, height), 20 + 17 * seed + 11 * position).convert("RGB").save(path)
        files.append(
            ImageFile(position, str(path), sha256(path.read_bytes()), path.stat().st_size, width, height)
        )
    facts = probe(sound)
    audio = choose_streams(facts)[1]
    result = MediaResult(
        video_id, "ok", path=str(sound), sha256=sha256(sound.read_bytes()), bytes=sound.stat().st_size,
        width=sizes[0][0], height=sizes[0][1], duration_s=duration_of(facts, audio), has_audio=True,
        acodec=audio["codec_name"], audio_stream=audio["index"], images=files,
    )  # fmt: skip
    store.record_photo_media(result)


PHOTOS = {  # id -> (image sizes, sound): mixed sizes, a shared sound, a sound longer than the images
    "7300000000000000011": ([(144, 192), (120, 90), (144, 256)], "short"),
    "7300000000000000012": ([(144, 192), (144, 192)], "short"),
    "7300000000000000013": ([(144, 256), (144, 192)], "long"),
}
VIDEO = "7300000000000000021"
SOUND_SECONDS = {"short": 4.0, "long": 10.0}


@pytest.fixture(scope="module")
def photo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding three photo posts (two of them share a sound) and one video, with their files."""
    root = tmp_path_factory.mktemp("photos")
    media, db = root / "media", root / "tk.duckdb"
    media.mkdir()
    sounds = {}
    for name, seconds in SOUND_SECONDS.items():
        sounds[name] = media / f"{7100000000000000001 + len(sounds)}.mp3"
        ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-ac", "1", str(sounds[name]))
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=96x128:rate=10:duration=2", "-f", "lavfi",
        "-i", "sine=frequency=300:duration=2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
        "-shortest", str(media / f"{VIDEO}.mp4"),
    )  # fmt: skip
    with Store.open(db) as store:
        for seed, (video_id, (sizes, sound)) in enumerate(PHOTOS.items()):
            store.upsert(parse_item(item(video_id, sounds[sound].stem, sizes)), source="test")
            record_photo(store, media, video_id, sizes, sounds[sound], seed)
        store.upsert(parse_item(item(VIDEO, "7100000000000000009", None)), source="test")
        store.record_media(inspect(VIDEO, media / f"{VIDEO}.mp4", media / f"{VIDEO}.mp4"))
    return db


def shard_members(out: Path) -> dict[str, dict[str, bytes]]:
    """key → member extension (after the key's dot) → bytes, over every shard."""
    found: dict[str, dict[str, bytes]] = {}
    for shard in sorted(out.glob("*/*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, _, extension = member.name.partition(".")
                found.setdefault(key, {})[extension] = tar.extractfile(member).read()
    return found


def check_photo_sample(members: dict[str, bytes], images: list[bytes], sound_s: float, size: int) -> dict:
    """The sample of a photo post: its images as members, a decodable slideshow mp4 with audio."""
    meta = json.loads(members["json"])
    assert meta["kind"] == "photo" and len(meta["images"]) == len(images)
    for number, (entry, original) in enumerate(zip(meta["images"], images, strict=True)):
        assert entry["member"] == f"img{number}.jpg"
        assert members[entry["member"]] == original and entry["sha256"] == sha256(original)
    assert {"mp4", "flac", "jpg"} <= set(members)
    decoder = VideoDecoder(members["mp4"])
    expected = photo_duration(len(images), sound_s)
    assert decoder.metadata.codec == "h264" and min(decoder[0].shape[1:]) == size
    assert decoder.metadata.duration_seconds == pytest.approx(expected, abs=0.25)
    assert meta["duration_s"] == pytest.approx(expected, abs=0.1)  # an mp3 is a few ms longer
    audio = AudioDecoder(members["mp4"]).get_all_samples()
    assert audio.data.abs().max() > 0.1  # the sound, not silence
    assert audio.duration_seconds == pytest.approx(min(sound_s, expected), abs=0.25)
    assert meta["has_audio"] is True and meta["url"].endswith(f"/photo/{meta['id']}")
    return meta


@pytest.mark.slow
def test_photo_posts_become_slideshow_samples_and_kind_selects(photo_db: Path, tmp_path: Path) -> None:
    media = photo_db.parent / "media"
    params = ShardParams(size=64, fps=5, ratios=(1.0, 0.0, 0.0))
    summary = build_shards(photo_db, tmp_path / "all", params, progress=False)
    # Two posts share a sound: distinct posts all the same, not copies of each other.
    assert summary.selected == 4 and summary.duplicates == 0 and not summary.failures
    samples = shard_members(tmp_path / "all")
    assert sorted(samples) == sorted([*PHOTOS, VIDEO])
    for video_id, (sizes, sound) in PHOTOS.items():
        images = [(media / f"{video_id}-{n:02d}.jpg").read_bytes() for n in range(len(sizes))]
        check_photo_sample(samples[video_id], images, SOUND_SECONDS[sound], 64)
    # the long sound is covered: its two images come round again
    assert photo_duration(2, SOUND_SECONDS["long"]) == SOUND_SECONDS["long"] > 2 * IMAGE_SECONDS
    video = json.loads(samples[VIDEO]["json"])
    assert video["kind"] == "video" and video["images"] == [] and "img0.jpg" not in samples[VIDEO]
    card = (tmp_path / "all" / "README.md").read_text()
    assert "4 samples in WebDataset shards (videos: 1, photo posts: 3)" in card
    assert "Photo posts (TikTok's photo mode): train 3, val 0, test 0." in card

    examples = list(load_shards(tmp_path / "all", frames=4, size=32, views=1))
    kinds = {e["key"]: e["meta"]["kind"] for e in examples}
    assert kinds == {VIDEO: "video"} | dict.fromkeys(PHOTOS, "photo")
    assert all(e["has_audio"] and e["video"].shape == (1, 3, 4, 32, 32) for e in examples)

    videos = ShardParams(**vars(params) | {"kind": "video"})  # --kind photo: the end-to-end test
    assert build_shards(photo_db, tmp_path / "video", videos, progress=False).selected == 1
    assert sorted(shard_members(tmp_path / "video")) == [VIDEO]


def test_kind_is_checked_in_the_library() -> None:
    with pytest.raises(TkdsError, match=r"--kind 'gif': choose one of video, photo, all"):
        check_params(ShardParams(kind="gif"))


# --- end to end: SynthTok -> the twin -> tkds collect -> tkds shard -> the loader


def run_tkds(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([*TKDS, *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"tkds {args[0]} failed: {result.stderr[-3000:]}"
    return result


def query(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as connection:
        return connection.execute(sql, params or []).fetchall()


@pytest.mark.slow
def test_photo_posts_end_to_end(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    generate(corpus, 12, seed=5, seconds=(1.0, 1.0), photo_share=0.5, progress=False)
    db, media = tmp_path / "tk.duckdb", tmp_path / "media"
    with serve(corpus, seed=3) as twin:
        posts = twin.state.corpus

        def mixed(tag: str) -> int:  # a tag listing photo posts and videos, as many of both as can be
            tagged = set(posts.by_tag[tag])
            return min(len(tagged & set(posts.photo_counts)), len(tagged - set(posts.photo_counts)))

        tag = max(sorted(posts.by_tag), key=mixed)
        listed = posts.by_tag[tag]
        photos = sorted(set(listed) & set(posts.photo_counts))
        assert len(photos) >= 2 and len(listed) > len(photos)
        images = {p: sorted((corpus / "images" / p).glob("*.jpeg")) for p in photos}
        bad = images[photos[0]][1]  # a cut-off image: that post fails, with its reason, and is retried
        whole = bad.read_bytes()
        bad.write_bytes(whole[: len(whole) // 2])
        collect = ["collect", "--db", str(db), "--proxy", twin.proxy_url, "--ca-cert", str(twin.ca_path),
                   "--hashtag", tag, "--limit", str(len(listed)), "--media", str(media),
                   "--rate", "50"]  # fmt: skip
        first = run_tkds(*collect)
        status = dict(query(db, "SELECT video_id, status || ':' || coalesce(error, '') FROM media"))
        assert status.pop(photos[0]).startswith("failed:undecodable: image 1")
        assert set(status.values()) == {"ok:"} and len(status) == len(listed) - 1
        counts = json.loads(query(db, "SELECT counts FROM crawl_runs")[0][0])
        assert counts["photo_posts_ok"] == len(photos) - 1 and counts["media_failures"] == {"undecodable": 1}
        assert f"{len(photos) - 1} of them photo posts" in " ".join(first.stderr.split())

        bad.write_bytes(whole)
        twin.clock.advance(3 * 3600)  # the URLs the listing gave have expired: the page gives fresh ones
        run_tkds(*collect)
    assert query(db, "SELECT count(*) FROM media WHERE status = 'ok'") == [(len(listed),)]
    runs = [json.loads(row[0]) for row in query(db, "SELECT counts FROM crawl_runs ORDER BY started_at")]
    assert runs[1]["photo_posts_ok"] == 1 and runs[1]["photo_refetches"] == 1
    for post in photos:  # the images as TikTok served them, checked and hashed; the sound probed
        rows = query(db, "SELECT path, sha256 FROM media_images WHERE video_id = ? ORDER BY position", [post])
        assert [sha for _, sha in rows] == [sha256(p.read_bytes()) for p in images[post]]
        assert [Path(path).name for path, _ in rows] == [f"{post}-{n:02d}.jpg" for n in range(len(rows))]
        path, has_audio = query(db, "SELECT path, has_audio FROM media WHERE video_id = ?", [post])[0]
        assert has_audio and Path(path).suffix == ".mp3" and not (media / f"{post}.mp4").exists()

    shards = tmp_path / "shards"
    small = ["--size", "64", "--fps", "5", "--ratios", "1,0,0"]
    run_tkds("shard", "--db", str(db), "--out", str(shards), *small)
    samples = shard_members(shards)
    assert sorted(samples) == sorted(listed)
    sounds = dict(query(db, "SELECT video_id, duration_s FROM media"))
    for post in photos:
        check_photo_sample(samples[post], [p.read_bytes() for p in images[post]], sounds[post], 64)
    kinds = {e["key"]: e["meta"]["kind"] for e in load_shards(shards, frames=4, size=32, views=1)}
    assert kinds == {key: "photo" if key in photos else "video" for key in listed}

    only = tmp_path / "photo-shards"
    run_tkds("shard", "--db", str(db), "--out", str(only), *small, "--kind", "photo")
    assert sorted(shard_members(only)) == photos
