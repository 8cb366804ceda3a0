"""Photo posts through the real twin: pages, every item list, signed images and the sound, as TikTok."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest
import yt_dlp
from PIL import Image

import tkds.synth
from tkds.benchmarks.demo import TINY, run_demo
from tkds.synth import generate
from tkds.synth.factors import SynthConfig
from tkds.synth.generate import plan_corpus
from tkds.tiktok import IMAGE_CDN_ALT_HOST, IMAGE_CDN_HOST, MUSIC_CDN_HOST
from tkds.twin import serve
from tkds.twin.app import URL_LIFETIME_S

from .test_twin import REFERER, client, embedded, signed_get, video_detail


@pytest.fixture(scope="module")
def photo_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("twin-photos") / "corpus"
    generate(out, 12, seed=21, seconds=(1.0, 1.0), photo_share=0.5, workers=2, progress=False)
    return out


@pytest.fixture(scope="module")
def twin(photo_corpus: Path):
    with serve(photo_corpus, seed=1) as running:
        yield running


def a_photo_post(twin) -> tuple[str, str]:
    corpus = twin.state.corpus
    video_id = next(i for i in corpus.newest_first if i in corpus.photo_counts)
    return corpus.author_of[video_id], video_id


def assert_served_as_photo_post(item: dict, images: int) -> None:
    assert len(item["imagePost"]["images"]) == images
    assert not {"playAddr", "downloadAddr"} & set(item["video"]), "no video for yt-dlp to download"
    assert item["video"]["duration"] == 0
    for image in item["imagePost"]["images"]:
        hosts = [url.split("/")[2] for url in image["imageURL"]["urlList"]]
        assert hosts == [IMAGE_CDN_HOST, IMAGE_CDN_ALT_HOST]
    assert item["music"]["playUrl"].startswith(f"https://{MUSIC_CDN_HOST}/")


def test_photo_and_video_urls_of_a_photo_post_serve_the_same_item(twin) -> None:
    user, video_id = a_photo_post(twin)
    session = client(twin)
    items = []
    for kind in ("photo", "video"):
        page = session.get(f"https://www.tiktok.com/@{user}/{kind}/{video_id}")
        assert page.status_code == 200
        detail = video_detail(page.text)
        assert detail["statusCode"] == 0
        items.append(detail["itemInfo"]["itemStruct"])
    for item in items:
        assert_served_as_photo_post(item, twin.state.corpus.photo_counts[video_id])
    assert items[0]["imagePost"]["images"] == items[1]["imagePost"]["images"]


def test_legacy_page_formats_carry_the_image_post(photo_corpus: Path) -> None:
    for page_format in ("sigi", "next"):
        with serve(photo_corpus, page_format=page_format) as legacy:
            user, video_id = a_photo_post(legacy)
            html = client(legacy).get(f"https://www.tiktok.com/@{user}/photo/{video_id}").text
            if page_format == "sigi":
                item = embedded(html, "SIGI_STATE")["ItemModule"][video_id]
            else:
                item = embedded(html, "__NEXT_DATA__")["props"]["pageProps"]["itemInfo"]["itemStruct"]
            assert_served_as_photo_post(item, legacy.state.corpus.photo_counts[video_id])


def test_every_item_list_serves_photo_posts(twin) -> None:
    corpus = twin.state.corpus
    user, video_id = a_photo_post(twin)
    session = client(twin)
    session.get(f"https://www.tiktok.com/@{user}/photo/{video_id}")  # sets msToken, as a visit does
    item = twin.state.served_item(video_id)
    tag = item["challenges"][0]["title"]
    lists = {
        "item detail": ("/api/item/detail/", {"itemId": video_id}, lambda b: [b["itemInfo"]["itemStruct"]]),
        "user posts": ("/api/post/item_list/", {"secUid": item["author"]["secUid"], "count": 35}, None),
        "challenge": (
            "/api/challenge/item_list/",
            {"challengeID": corpus.challenge_id(tag), "count": 35},
            None,
        ),
        "music": ("/api/music/item_list/", {"musicID": item["music"]["id"], "count": 35}, None),
        "search": ("/api/search/item/full/", {"keyword": item["desc"].split()[0], "count": 35}, None),
        "recommend": ("/api/recommend/item_list/", {"from_page": "fyp", "count": 35}, None),
    }
    for name, (path, params, pick) in lists.items():
        body = signed_get(session, twin, path, params).json()
        items = pick(body) if pick else body.get("itemList") or body.get("item_list")
        served = [i for i in items if i["id"] == video_id]
        assert served, f"{name} does not list the photo post"
        assert_served_as_photo_post(served[0], corpus.photo_counts[video_id])
        for other in items:  # videos keep their play address
            if other["id"] not in corpus.photo_counts:
                assert other["video"]["playAddr"] and "imagePost" not in other


def test_yt_dlp_finds_only_the_sound_of_a_photo_post(twin) -> None:
    user, video_id = a_photo_post(twin)
    options = {"proxy": twin.proxy_url, "nocheckcertificate": True, "quiet": True, "no_warnings": True}
    with yt_dlp.YoutubeDL(options) as ydl:  # as on TikTok: no video format, the sound alone
        info = ydl.extract_info(f"https://www.tiktok.com/@{user}/video/{video_id}", download=False)
    assert info["id"] == video_id
    assert [f["format_id"] for f in info["formats"]] == ["audio"]
    assert all(f.get("vcodec") == "none" for f in info["formats"])


def ffprobe(path: Path) -> dict:
    command = ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,channels:format=duration"]
    command += ["-of", "json", str(path)]
    return json.loads(subprocess.run(command, capture_output=True, check=True).stdout)


def test_images_and_sound_download_as_declared(twin, tmp_path: Path) -> None:
    user, video_id = a_photo_post(twin)
    page = client(twin).get(f"https://www.tiktok.com/@{user}/photo/{video_id}")
    item = video_detail(page.text)["itemInfo"]["itemStruct"]
    fresh = client(twin)  # no cookies: TikTok's image and music CDNs serve signed URLs without them
    for image in item["imagePost"]["images"]:
        alternates = [fresh.get(url, headers=REFERER) for url in image["imageURL"]["urlList"]]
        assert [r.status_code for r in alternates] == [200, 200]
        assert alternates[0].headers["content-type"] == "image/jpeg"
        assert alternates[0].content == alternates[1].content
        with Image.open(io.BytesIO(alternates[0].content)) as jpeg:
            assert jpeg.format == "JPEG"
            assert jpeg.size == (image["imageWidth"], image["imageHeight"])

    sound = fresh.get(item["music"]["playUrl"], headers=REFERER)
    assert sound.status_code == 200 and sound.headers["content-type"] == "audio/mpeg"
    (tmp_path / "sound.mp3").write_bytes(sound.content)
    probe = ffprobe(tmp_path / "sound.mp3")
    assert [(s["codec_name"], s["channels"]) for s in probe["streams"]] == [("mp3", 1)]
    assert float(probe["format"]["duration"]) == pytest.approx(item["music"]["duration"], abs=0.2)


def test_forged_expired_and_unknown_image_urls_are_refused(twin) -> None:
    user, video_id = a_photo_post(twin)
    session = client(twin)
    item = video_detail(session.get(f"https://www.tiktok.com/@{user}/photo/{video_id}").text)["itemInfo"][
        "itemStruct"
    ]
    image = item["imagePost"]["images"][0]["imageURL"]["urlList"][0]
    sound = item["music"]["playUrl"]
    for url in (image, sound):
        forged = session.get(url.replace("x-signature=", "x-signature=0"), headers=REFERER)
        assert forged.status_code == 403 and "bad signature" in forged.text
        assert session.get(url.split("?")[0], headers=REFERER).status_code == 403, "unsigned"
    other_key = image.replace(image.split("/")[4].split("~")[0], "0" * 32)
    assert session.get(other_key, headers=REFERER).status_code == 404

    twin.clock.advance(URL_LIFETIME_S + 60)
    try:
        for url in (image, sound):
            expired = session.get(url, headers=REFERER)
            assert expired.status_code == 403 and "expired" in expired.text
    finally:
        twin.clock.advance(-(URL_LIFETIME_S + 60))


def test_media_faults_apply_to_images_and_sounds(photo_corpus: Path) -> None:
    with serve(photo_corpus, faults="rate429=1", seed=2) as faulty:
        _, video_id = a_photo_post(faulty)
        item = faulty.state.served_item(video_id)
        session = client(faulty)
        for url in (item["imagePost"]["images"][0]["imageURL"]["urlList"][0], item["music"]["playUrl"]):
            assert session.get(url, headers=REFERER).status_code == 429


@pytest.mark.slow  # run_demo imports the whole pipeline (torch included) before its synth call
def test_the_demo_synthesises_photo_posts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: dict = {}

    class Stop(Exception):
        pass

    def record(out, videos, **options):  # the demo's synth settings, without running the demo
        asked.update(videos=videos, **options)
        raise Stop

    monkeypatch.setattr(tkds.synth, "generate", record)
    with pytest.raises(Stop):
        run_demo(tmp_path / "demo", TINY)
    config = SynthConfig(videos=asked["videos"], photo_share=asked.get("photo_share", 0.0))
    assert plan_corpus(config, tmp_path / "plan").photos >= 5
