"""SynthTok photo posts on disk: JPEG images of the declared sizes, the sound as MP3, TikTok's imagePost."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tkds.errors import TkdsError
from tkds.synth import generate
from tkds.tiktok import IMAGE_CDN_ALT_HOST, IMAGE_CDN_HOST, PHOTO_IMAGE_SUFFIX, photo_image_key

SEED, POSTS = 4, 10


@pytest.fixture(scope="module")
def photo_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("photos") / "corpus"
    generate(out, POSTS, seed=SEED, seconds=(1.0, 1.0), photo_share=0.5, workers=2, progress=False)
    return out


def card_of(corpus: Path) -> dict:
    return json.loads((corpus / "corpus.json").read_text())


def ffprobe(path: Path) -> dict:
    command = ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,sample_rate,channels"]
    command += ["-show_entries", "format=format_name,duration", "-of", "json", str(path)]
    return json.loads(subprocess.run(command, capture_output=True, check=True, text=True).stdout)


def test_photo_posts_have_jpegs_of_the_declared_sizes_and_no_mp4(photo_corpus: Path) -> None:
    card = card_of(photo_corpus)
    photos = [v for v in card["videos"] if v["kind"] == "photo"]
    assert card["photos"] == len(photos) and 0 < len(photos) < POSTS
    assert card["config"]["photo_share"] == 0.5
    for post in card["videos"]:
        item = json.loads((photo_corpus / "items" / f"{post['id']}.json").read_text())
        mp4 = photo_corpus / "media" / f"{post['id']}.mp4"
        if post["kind"] == "video":
            assert mp4.exists() and "imagePost" not in item and item["video"]["playAddr"]
            continue
        assert not mp4.exists()
        images = item["imagePost"]["images"]
        assert 2 <= len(images) == len(post["images"]) <= 6
        for position, (image, size) in enumerate(zip(images, post["images"], strict=True)):
            with Image.open(photo_corpus / "images" / post["id"] / f"{position:02d}.jpeg") as jpeg:
                assert jpeg.format == "JPEG" and jpeg.mode == "RGB"
                assert jpeg.size == (image["imageWidth"], image["imageHeight"]) == tuple(size)
                assert jpeg.width == card["config"]["width"] < jpeg.height, "portrait, at the synth width"
            urls = image["imageURL"]["urlList"]
            assert [url.split("/")[2] for url in urls] == [IMAGE_CDN_HOST, IMAGE_CDN_ALT_HOST]
            key = photo_image_key(post["id"], position)
            assert all(f"/{key}{PHOTO_IMAGE_SUFFIX}?" in url and "x-signature=" in url for url in urls)
        assert item["imagePost"]["cover"] == images[0]


def test_photo_post_items_are_shaped_like_tiktoks(photo_corpus: Path) -> None:
    for post in card_of(photo_corpus)["videos"]:
        if post["kind"] != "photo":
            continue
        item = json.loads((photo_corpus / "items" / f"{post['id']}.json").read_text())
        video = item["video"]
        assert video["duration"] == video["width"] == video["height"] == 0
        assert not {"playAddr", "downloadAddr", "bitrateInfo"} & set(video), "no video to download"
        assert video["cover"] == item["imagePost"]["images"][0]["imageURL"]["urlList"][0]
        assert item["music"]["id"] == post["sound_id"] and item["music"]["playUrl"].endswith(".mp3")
        # The same likes model as videos: the exact count is the card's, its terms sum to it.
        assert int(item["statsV2"]["diggCount"]) == post["likes"]
        total = sum(post["likes_terms"].values())
        assert total == pytest.approx(post["log1p_likes"], abs=0.01 + 1 / (1 + post["likes"]))


def test_each_photo_posts_sound_is_an_mp3_of_the_sounds_length(photo_corpus: Path) -> None:
    photos = [v for v in card_of(photo_corpus)["videos"] if v["kind"] == "photo"]
    assert {p.stem for p in (photo_corpus / "sounds").glob("*.mp3")} == {v["sound_id"] for v in photos}
    for post in photos:
        music_id = post["sound_id"]
        item = json.loads((photo_corpus / "items" / f"{post['id']}.json").read_text())
        probe = ffprobe(photo_corpus / "sounds" / f"{music_id}.mp3")
        assert probe["format"]["format_name"] == "mp3"
        stream = probe["streams"][0]
        assert (stream["codec_name"], stream["channels"], stream["sample_rate"]) == ("mp3", 1, "44100")
        assert float(probe["format"]["duration"]) == pytest.approx(item["music"]["duration"], abs=0.2)


@pytest.mark.slow
def test_photo_posts_leave_every_video_of_the_seed_unchanged(photo_corpus: Path, tmp_path: Path) -> None:
    videos_only = tmp_path / "videos-only"
    generate(videos_only, POSTS, seed=SEED, seconds=(1.0, 1.0), workers=2, progress=False)
    assert card_of(videos_only)["photos"] == 0
    ids = {v["id"] for v in card_of(videos_only)["videos"]}
    assert {v["id"] for v in card_of(photo_corpus)["videos"]} == ids, "the same post ids"
    for post in card_of(photo_corpus)["videos"]:
        if post["kind"] == "video":
            for name in (f"media/{post['id']}.mp4", f"items/{post['id']}.json"):
                assert (photo_corpus / name).read_bytes() == (videos_only / name).read_bytes(), name


def test_photo_share_outside_0_to_1_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TkdsError, match=r"--photo-share must be a fraction 0\.\.1"):
        generate(tmp_path / "bad", 2, photo_share=1.5, progress=False)
