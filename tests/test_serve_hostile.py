"""`tkds serve` against hostile input: uploads that declare huge frames, long durations or many frames,
form fields out of range, and a likes interval that must hold its estimate whatever the input."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import imageio_ffmpeg
import numpy as np
import pytest

from tests.test_serve import a_video, predictor, run_dir, running  # noqa: F401 - fixtures reused
from tkds.serve.app import create_app
from tkds.serve.predictor import (
    MAX_FOLLOWERS,
    MAX_LIKES,
    PredictError,
    Predictor,
    UploadLimits,
    likes_with_interval,
)

MB = 2**20


def lavfi_video(out: Path, size: str, rate: int, seconds: float) -> Path:
    """A solid-colour H.264 mp4: a few kB whatever frame size or length it declares."""
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi",
        "-i", f"color=c=teal:size={size}:rate={rate}", "-t", str(seconds),
        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "51", "-pix_fmt", "yuv420p", str(out),
    ]  # fmt: skip
    subprocess.run(command, check=True, timeout=120)
    return out


def second_stream(first: Path, second: Path) -> Path:
    """`first` with `second`'s video as a second, non-default video stream."""
    out = first.with_name("two-" + first.name)
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(first), "-i", str(second),
        "-map", "0:v", "-map", "1:v", "-c", "copy", "-disposition:v:0", "default", "-disposition:v:1", "0",
        str(out),
    ]  # fmt: skip
    subprocess.run(command, check=True, timeout=60)
    return out


def peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(run_dir: Path) -> Iterator[tuple[str, subprocess.Popen]]:  # noqa: F811
    """`tkds serve` as a user starts it, in its own process, so that its memory can be read alone."""
    port = free_port()
    command = [sys.executable, "-m", "tkds", "serve", "--run", str(run_dir), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "tkds serve did not start"
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    try:
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=30)


def error_of(response: httpx.Response, route: str) -> str:
    """The error the API's json or the page's error box says."""
    if route != "/":
        return response.json()["error"]
    assert "text/html" in response.headers["content-type"]
    return response.text.split("id='error'>", 1)[1].split("</div>", 1)[0]


def upload(base: str, path: Path, route: str = "/api/predict", **fields: str) -> httpx.Response:
    files = {"file": (path.name, path.read_bytes(), "video/mp4")}
    return httpx.post(base + route, files=files, data=fields, timeout=120)


@pytest.mark.slow
def test_huge_declared_frames_are_refused_before_decoding_and_memory_stays_flat(
    server: tuple[str, subprocess.Popen], small_corpus: Path, tmp_path: Path
) -> None:
    url, process = server
    huge = lavfi_video(tmp_path / "huge.mp4", "8192x8192", 1, 1)
    assert huge.stat().st_size < 300_000  # the 198 kB file of the report: 8192×8192, 1.5 bytes a pixel
    assert upload(url, a_video(small_corpus)).status_code == 200  # warm: the first prediction's own peak
    before = peak_rss(process.pid)

    api = upload(url, huge)
    assert api.status_code == 413, api.text[:500]
    assert "8192×8192 frames; this server takes at most 4096×4096" in error_of(api, "/api/predict")
    page = upload(url, huge, route="/")
    assert page.status_code == 413 and "at most 4096×4096" in error_of(page, "/")
    # Within the limits but large: the frames are scaled in the decoder, never held at 2048×2048.
    large = upload(url, lavfi_video(tmp_path / "large.mp4", "2048x2048", 2, 2))
    assert large.status_code == 200, large.text[:500]

    grown = peak_rss(process.pid) - before
    assert grown < 300 * MB, f"the server's peak memory grew by {grown / MB:.0f} MB"
    assert httpx.get(f"{url}/healthz").json()["status"] == "ok"


@pytest.fixture(scope="module")
def strict_url(predictor: Predictor) -> Iterator[str]:  # noqa: F811
    """The app with tight upload limits, so that small real videos cross each one."""
    limits = UploadLimits(max_width=200, max_height=4096, max_seconds=10, max_frames=100)
    with running(create_app(dataclasses.replace(predictor, limits=limits))) as url:
        yield url


def test_each_upload_limit_is_named_in_a_413(strict_url: str, small_corpus: Path, tmp_path: Path) -> None:
    ordinary = upload(strict_url, a_video(small_corpus))  # SynthTok videos are 144×256, 2–3 s
    assert ordinary.status_code == 200, ordinary.text[:300]
    cases = {
        "wide.mp4": (("256x144", 5, 1), "256×144 frames; this server takes at most 200×4096"),
        "long.mp4": (("16x16", 1, 30), "lasts 30 s; this server takes at most 10 s"),
        "many.mp4": (("16x16", 60, 5), "has 300 frames; this server takes at most 100"),
        "hidden.mp4": (("16x16", 5, 1), "256×144 frames; this server takes at most 200×4096"),
    }
    for name, (shape, message) in cases.items():
        video = lavfi_video(tmp_path / name, *shape)
        if name == "hidden.mp4":  # a second video stream, not the default one, is the large one
            video = second_stream(video, lavfi_video(tmp_path / "second.mp4", "256x144", 5, 1))
        for route in ("/api/predict", "/"):
            response = upload(strict_url, video, route=route)
            assert response.status_code == 413, (name, route, response.text[:300])
            assert message in error_of(response, route), name


# Each is refused with a 422 naming the field; 10**35 written out used to be an HTTP 500.
BAD_FIELDS = [
    {"followers": str(10**35)},
    {"followers": "1e35"},
    {"followers": str(MAX_FOLLOWERS + 1)},
    {"followers": "-1"},
    {"followers": "nan"},
    {"followers": "inf"},
    {"followers": "abc"},
    {"followers": "1.5"},
    {"caption": "#" * 2201},
    {"url": "https://www.tiktok.com/@a/video/" + "1" * 3000},
]


@pytest.mark.parametrize("route", ["/api/predict", "/"])
def test_form_fields_out_of_range_get_a_422_naming_the_field(
    strict_url: str, small_corpus: Path, route: str
) -> None:
    video = a_video(small_corpus)
    for fields in BAD_FIELDS:
        response = upload(strict_url, video, route=route, **fields)
        assert response.status_code == 422, (fields, response.status_code, response.text[:300])
        assert f"{next(iter(fields))}" in error_of(response, route), fields
    edge = upload(strict_url, video, route=route, followers=str(MAX_FOLLOWERS))
    assert edge.status_code == 200, edge.text[:300]


def test_the_library_refuses_out_of_range_followers_before_decoding(predictor: Predictor) -> None:  # noqa: F811
    for followers in (10**35, -1, MAX_FOLLOWERS + 1, True, 1.5, float("nan")):
        with pytest.raises(PredictError, match="followers must be a whole number from 0 to") as error:
            predictor.predict(b"not even a video", followers)
        assert error.value.status == 422


def test_the_interval_holds_the_estimate_for_any_fit_and_band() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20_000):
        log_likes = float(rng.choice([rng.normal(5, 4), rng.uniform(-1e3, 1e3), rng.normal(0, 0.1)]))
        band = tuple(rng.normal(rng.normal(0, 3), rng.uniform(0, 4), 3))  # any order, any sign
        likes, (low, high) = likes_with_interval(log_likes, band)
        assert 0 <= low <= likes <= high <= MAX_LIKES, (log_likes, band)
        assert all(isinstance(value, int) for value in (likes, low, high))


def test_predictions_hold_their_interval_even_when_the_residuals_are_all_of_one_sign(
    predictor: Predictor,  # noqa: F811
    small_corpus: Path,
) -> None:
    """A fit that underrates every test video (all residuals positive) made the estimate fall below its
    own interval; so did one that overrates them. Extreme follower counts go along."""
    video = a_video(small_corpus).read_bytes()
    for band in ((0.8, 1.4, 2.5), (-3.0, -2.2, -0.4), tuple(predictor.likes.residuals)):
        biased = dataclasses.replace(
            predictor, likes=dataclasses.replace(predictor.likes, residuals=np.array(band))
        )
        for followers in (0, MAX_FOLLOWERS):
            prediction = biased.predict(video, followers)
            low, high = prediction.interval
            assert low <= prediction.likes <= high, (band, followers, prediction.likes, prediction.interval)
