"""`tkds serve`: the page in a real headless Chromium, the JSON API, bad input, and refusing to start."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import imageio_ffmpeg
import pytest
import uvicorn
from playwright.sync_api import expect, sync_playwright

from tkds.benchmarks.run import bench
from tkds.collector.browser import CHROMIUM, CHROMIUM_ARGS
from tkds.serve.app import create_app
from tkds.serve.page import too_large_text
from tkds.serve.predictor import Predictor
from tkds.twin import serve as serve_twin


@pytest.fixture(scope="module")
def run_dir(built_shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real bench run: `random` needs no training, so this takes seconds."""
    out = tmp_path_factory.mktemp("serve") / "run"
    bench(built_shards, out, ("random", "metadata-only"), preset="cpu-tiny", seeds=1, progress=False)
    return out


@pytest.fixture(scope="module")
def predictor(run_dir: Path) -> Predictor:
    return Predictor.load(run_dir)


@contextlib.contextmanager
def running(app) -> Iterator[str]:
    """The app under uvicorn on a free loopback port, in a background thread; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def base_url(predictor: Predictor) -> Iterator[str]:
    with running(create_app(predictor)) as url:
        yield url


def a_video(corpus: Path) -> Path:
    return sorted((corpus / "media").glob("*.mp4"))[0]


def healthy(base_url: str) -> bool:
    return httpx.get(f"{base_url}/healthz").json()["status"] == "ok"


def test_page_in_chromium_shows_the_four_results(base_url: str, small_corpus: Path, tmp_path: Path) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(base_url)
        expect(page.locator("a[href='/openapi.json']")).to_be_visible()
        page.click("button[type=submit]")  # nothing chosen: the page says so without a request
        expect(page.locator("#client-error")).to_contain_text("Choose an mp4")

        page.set_input_files("input[name=file]", str(a_video(small_corpus)))
        page.fill("input[name=followers]", "12000")
        page.fill("input[name=caption]", "first try #fyp")
        page.click("button[type=submit]")
        page.wait_for_selector("#originality")

        likes = page.locator("#likes .value").inner_text()
        assert likes.replace(",", "").isdigit()
        expect(page.locator("#likes")).to_contain_text("12,000 followers")
        expect(page.locator("#hashtags li")).to_have_count(5)
        assert all(tag.startswith("#") for tag in page.locator("#hashtags .tag").all_inner_texts())
        expect(page.locator("#similar li")).to_have_count(10)
        links = page.locator("#similar a").evaluate_all("links => links.map(a => a.href)")
        assert links and all(link.startswith("https://www.tiktok.com/@") for link in links)
        page.wait_for_function("[...document.images].every(image => image.complete)")
        widths = page.locator("#similar img").evaluate_all("images => images.map(i => i.naturalWidth)")
        assert len(widths) == 10 and all(width > 0 for width in widths)
        expect(page.locator("#originality .value")).to_contain_text("percentile")
        expect(page.locator("#originality .finding")).to_contain_text("Spearman ρ")
        # docs/serve.png is taken from a `tkds demo` run by the same steps; a test run keeps its own copy.
        page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
        assert (tmp_path / "serve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        browser.close()


def test_api_gives_every_field(base_url: str, small_corpus: Path) -> None:
    video = a_video(small_corpus)
    response = httpx.post(
        f"{base_url}/api/predict",
        files={"file": (video.name, video.read_bytes(), "video/mp4")},
        data={"followers": "5000", "caption": "hello #Fitness"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert 0 <= body["interval"][0] <= body["likes"] <= body["interval"][1]
    assert body["followers"] == 5000 and not body["followers_assumed"]
    scores = [tag["score"] for tag in body["hashtags"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    assert [t["in_caption"] for t in body["hashtags"]] == [t["tag"] == "fitness" for t in body["hashtags"]]
    similar = {s["id"] for s in body["similar"]}
    assert len(similar) == 10 and video.stem not in similar  # the upload is in the corpus: not its own match
    thumbnail = httpx.get(base_url + body["similar"][0]["thumbnail"])
    assert thumbnail.headers["content-type"] == "image/jpeg" and thumbnail.content.startswith(b"\xff\xd8")
    assert 0 <= body["originality"] <= 100 and body["cohort"] and "ρ" in body["finding"]
    assert set(body["timings"]) == {"decode_ms", "embed_ms", "predict_ms"}
    assert body["notes"] == [f"The corpus holds this video ({video.stem}); similar videos leave it out."]
    schema = httpx.get(f"{base_url}/openapi.json").json()
    assert set(schema["paths"]["/api/predict"]["post"]["responses"]) >= {"200", "400", "413", "415", "422"}


def test_neither_the_page_nor_the_schema_shows_the_machine_path(base_url: str, predictor: Predictor) -> None:
    full = str(predictor.run.resolve())
    page, schema = httpx.get(base_url).text, httpx.get(f"{base_url}/openapi.json").text
    assert full not in page and full not in schema
    label = f"{predictor.run.resolve().parent.name}/{predictor.run.resolve().name}"
    assert label in page and label in schema


def test_video_without_audio_is_predicted_with_a_note(
    base_url: str, small_corpus: Path, tmp_path: Path
) -> None:
    silent = tmp_path / "silent.mp4"
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    source = a_video(small_corpus)
    subprocess.run([ffmpeg, "-v", "error", "-i", str(source), "-an", "-c:v", "copy", str(silent)], check=True)
    response = httpx.post(
        f"{base_url}/api/predict", files={"file": ("silent.mp4", silent.read_bytes())}, timeout=60
    )
    assert response.status_code == 200, response.text
    notes = response.json()["notes"]
    assert any("No audio track" in note for note in notes)
    assert any("No follower count given" in note for note in notes) and response.json()["followers_assumed"]


def sound_with_cover() -> bytes:
    """An m4a with cover art: its picture is a one-frame video stream that no decoder plays as a video."""
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    with tempfile.TemporaryDirectory() as folder:
        song = Path(folder) / "song.m4a"
        subprocess.run(
            [ffmpeg, "-v", "error", "-f", "lavfi", "-i", "sine=d=2", "-f", "lavfi", "-i", "color=red:s=64x64",
             "-map", "0", "-map", "1", "-frames:v", "1", "-c:a", "aac", "-c:v", "mjpeg",
             "-disposition:v:0", "attached_pic", str(song)],
            check=True,
        )  # fmt: skip
        return song.read_bytes()


# name → (form files from a whole SynthTok mp4, form fields, status, what the message says)
BAD_INPUTS = {
    "text file": (lambda mp4: {"file": ("notes.txt", b"not a video\n" * 50)}, {}, 415, "is not a video file"),
    "truncated mp4": (
        lambda mp4: {"file": ("cut.mp4", mp4[: len(mp4) // 2])},
        {},
        422,
        "cut.mp4 is cut short",
    ),
    "sound only": (
        lambda mp4: {"file": ("song.m4a", sound_with_cover())},
        {},
        422,
        "song.m4a has no video stream",
    ),
    "file and URL": (
        lambda mp4: {"file": ("a.mp4", mp4)},
        {"url": "https://www.tiktok.com/@a/video/1"},
        400,
        "not both",
    ),
    "empty file": (lambda mp4: {"file": ("empty.mp4", b"")}, {}, 400, "empty.mp4 is empty"),
    "nothing": (lambda mp4: None, {"followers": "3"}, 400, "no video given"),
    "bad followers": (lambda mp4: {"file": ("a.mp4", mp4)}, {"followers": "many"}, 422, "followers"),
    "not a TikTok URL": (lambda mp4: None, {"url": "https://example.com/v/1"}, 400, "not a TikTok video URL"),
}


@pytest.mark.parametrize("path", ["/api/predict", "/"])
@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_running(
    base_url: str, small_corpus: Path, case: str, path: str
) -> None:
    files, data, status, message = BAD_INPUTS[case]
    response = httpx.post(base_url + path, files=files(a_video(small_corpus).read_bytes()), data=data)
    assert response.status_code == status, response.text
    if path == "/":
        assert "text/html" in response.headers["content-type"]
        assert "id='error'" in response.text and message in response.text
    else:
        assert message in response.json()["error"]
    assert healthy(base_url)


def test_uploads_over_the_limit_are_refused_before_being_read(predictor: Predictor) -> None:
    two_megabytes = {"file": ("big.mp4", b"\0" * 2 * 2**20, "video/mp4")}
    with running(create_app(predictor, max_upload_mb=1)) as url:
        api = httpx.post(f"{url}/api/predict", files=two_megabytes)
        assert api.status_code == 413 and "is 2.0 MB; this server takes at most 1 MB" in api.json()["error"]
        page = httpx.post(url, files=two_megabytes)
        assert page.status_code == 413 and "at most 1 MB" in page.text and "<form" in page.text

        def chunks() -> Iterator[bytes]:  # no Content-Length: the counted bytes trip the limit
            yield b"--x\r\nContent-Disposition: form-data; name=file; filename=a.mp4\r\n\r\n"
            yield from (b"\0" * 2**16 for _ in range(32))

        chunked = httpx.post(
            f"{url}/api/predict",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=x"},
        )
        assert chunked.status_code == 413
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as claim:  # 500 MB announced, none sent
            claim.sendall(
                b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                b"Content-Length: 524288000\r\n\r\n"
            )
            assert claim.recv(4096).startswith(b"HTTP/1.1 413")
        assert healthy(url)


def test_the_url_input_fetches_through_the_collector_and_its_proxy(
    predictor: Predictor, small_corpus: Path
) -> None:
    item = json.loads(sorted((small_corpus / "items").glob("*.json"))[0].read_text())
    link = f"https://www.tiktok.com/@{item['author']['uniqueId']}/video/{item['id']}"
    with (
        serve_twin(small_corpus) as twin,
        running(create_app(predictor, proxy=twin.proxy_url, ca_cert=twin.ca_path)) as url,
    ):
        response = httpx.post(f"{url}/api/predict", data={"url": link}, timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()  # the video itself, found in the corpus, is named and not listed as similar
    assert f"The corpus holds this video ({item['id']})" in " ".join(body["notes"])
    assert item["id"] not in {video["id"] for video in body["similar"]}


def test_serve_refuses_a_run_without_its_artefacts_and_names_them(run_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "run"
    shutil.copytree(run_dir, broken, ignore=shutil.ignore_patterns("checkpoint.pt", "embeddings.parquet"))
    result = subprocess.run(
        [sys.executable, "-m", "tkds", "serve", "--run", str(broken), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("tkds: error: ") and len(result.stderr.splitlines()) == 1
    cell = broken / "random" / "seed0"
    assert str(cell / "checkpoint.pt") in result.stderr and str(cell / "embeddings.parquet") in result.stderr


def test_size_messages_never_read_as_the_limit_itself() -> None:
    assert too_large_text(2**20 + 1, 1).startswith("The upload is over 1 MB; this server takes at most 1 MB")
    assert too_large_text(int(1.26 * 2**20), 1).startswith("The upload is 1.3 MB;")
    assert too_large_text(None, 200).startswith("The upload is too large;")


def test_inputs_outside_the_corpus_get_a_note(base_url: str, small_corpus: Path) -> None:
    video = a_video(small_corpus)
    response = httpx.post(
        f"{base_url}/api/predict",
        files={"file": (video.name, video.read_bytes(), "video/mp4")},
        data={"followers": str(10**10)},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    notes = response.json()["notes"]
    assert any(note.startswith("10,000,000,000 followers is outside the corpus's") for note in notes), notes
