"""Media: downloaded with yt-dlp's TikTok extractor, checked with ffprobe, hashed, renamed into place.

Files land in MEDIA/.partial first; only a file that probes as whole video is renamed to MEDIA/ID.mp4,
so the media folder never holds a half file, and a killed run's leftovers are swept at the next start.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import yt_dlp

from tkds.collector.politeness import RateLimiter
from tkds.tiktok import VIDEO_CDN_HOST, WEB_HOST, video_page_url

PARTIAL_DIR = ".partial"


@dataclass
class MediaResult:
    video_id: str
    status: str  # "ok" or "failed"
    error: str | None = None
    path: str | None = None
    sha256: str | None = None
    bytes: int | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    duration_s: float | None = None
    has_audio: bool | None = None
    vcodec: str | None = None
    acodec: str | None = None
    video_stream: int | None = None  # the stream indexes `choose_streams` picked
    audio_stream: int | None = None


class _Quiet:
    def debug(self, message: str) -> None: ...

    def warning(self, message: str) -> None: ...

    def error(self, message: str) -> None: ...


def sweep_partials(media_dir: Path) -> None:
    """Remove what a killed run left half-written."""
    shutil.rmtree(media_dir / PARTIAL_DIR, ignore_errors=True)


def probe(path: Path) -> dict:
    """ffprobe's view of a file, reading every packet so that a cut-off file shows."""
    result = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_packets",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 or result.stderr.strip():
        raise ValueError((result.stderr.strip().splitlines() or ["ffprobe failed"])[-1])
    return json.loads(result.stdout)


def choose_streams(facts: dict) -> tuple[dict | None, dict | None]:
    """The default video stream (the largest if several are default) and the default audio stream
    (most channels, then highest sample rate): ffmpeg's own choice, made explicit so it can be recorded."""

    def best(kind: str, key) -> dict | None:
        streams = [s for s in facts.get("streams", []) if s.get("codec_type") == kind]
        default = [s for s in streams if s.get("disposition", {}).get("default")]
        return max(default or streams, key=key, default=None)

    video = best("video", lambda s: (s.get("width") or 0) * (s.get("height") or 0))
    audio = best("audio", lambda s: (s.get("channels") or 0, int(s.get("sample_rate") or 0)))
    return video, audio


def duration_of(facts: dict, video: dict) -> float | None:
    """The container's duration, else the video stream's; None when neither says."""
    for value in (facts.get("format", {}).get("duration"), video.get("duration")):
        if value not in (None, "N/A"):
            return float(value)
    return None


# yt-dlp's error text -> a failure reason; HTTP codes only as "HTTP Error N", never bare digits (ids).
FAILURE_PATTERNS = (
    (re.compile(r"no space left", re.I), "disk_full"),
    (re.compile(r"HTTP Error 429"), "rate_limited"),
    (re.compile(r"too short|incomplete|did not get any data", re.I), "truncated"),
    (re.compile(r"ip address is blocked", re.I), "blocked"),
    (re.compile(r"private", re.I), "private"),
    (re.compile(r"log in", re.I), "login_required"),
    (re.compile(r"not available", re.I), "unavailable"),
    (re.compile(r"HTTP Error 403"), "forbidden"),
    (re.compile(r"HTTP Error 5\d\d"), "server_error"),
)


def _classify(message: str) -> str:
    return next((reason for pattern, reason in FAILURE_PATTERNS if pattern.search(message)), "download_error")


_per_thread = threading.local()


def _downloader(partial_dir: Path, proxy: str | None, trust_proxy_ca: bool, cookie_file: Path | None):
    """This thread's YoutubeDL for these options: building one costs ~125 ms of extractor loading."""
    key = (partial_dir, proxy, trust_proxy_ca, cookie_file)
    cache = _per_thread.__dict__.setdefault("downloaders", {})
    if key not in cache:
        options = {
            "proxy": proxy,
            "nocheckcertificate": trust_proxy_ca,
            "cookiefile": str(cookie_file) if cookie_file else None,
            "outtmpl": str(partial_dir / "%(id)s.%(ext)s"),
            "format": "play/download/b",
            "retries": 3,
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "logger": _Quiet(),
        }
        cache[key] = yt_dlp.YoutubeDL({k: v for k, v in options.items() if v is not None})
    return cache[key]


def download(
    video_id: str,
    unique_id: str,
    media_dir: Path,
    *,
    proxy: str | None,
    trust_proxy_ca: bool,
    cookie_file: Path | None,
    limiter: RateLimiter,
) -> MediaResult:
    """Download one video's mp4 through yt-dlp (blocking; run it in a worker thread)."""
    partial_dir = media_dir / PARTIAL_DIR
    partial_dir.mkdir(parents=True, exist_ok=True)
    limiter.wait_blocking(WEB_HOST)  # the extractor's page request
    limiter.wait_blocking(VIDEO_CDN_HOST)
    try:
        ydl = _downloader(partial_dir, proxy, trust_proxy_ca, cookie_file)
        info = ydl.extract_info(video_page_url(unique_id, video_id), download=True)
        downloaded = Path(info["requested_downloads"][0]["filepath"])
    except (yt_dlp.utils.YoutubeDLError, OSError) as error:
        return MediaResult(video_id, "failed", _classify(str(error)))
    return inspect(video_id, downloaded, media_dir / f"{video_id}.mp4")


def inspect(video_id: str, source: Path, final: Path) -> MediaResult:
    """Probe, hash and move `source` to `final` (atomically); an undecodable file is removed, not moved."""
    try:
        facts = probe(source)
    except ValueError as error:
        if source != final:
            source.unlink(missing_ok=True)
        return MediaResult(video_id, "failed", f"undecodable: {error}")
    video, audio = choose_streams(facts)
    if video is None or not video.get("width"):
        if source != final:
            source.unlink(missing_ok=True)
        return MediaResult(video_id, "failed", "undecodable: no video stream")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    os.replace(source, final)
    numerator, _, denominator = (video.get("avg_frame_rate") or "0/1").partition("/")
    return MediaResult(
        video_id,
        "ok",
        path=str(final.resolve()),
        sha256=digest,
        bytes=final.stat().st_size,
        width=video.get("width"),
        height=video.get("height"),
        fps=float(numerator) / float(denominator or 1) if float(denominator or 1) else None,
        duration_s=duration_of(facts, video),
        has_audio=audio is not None,
        vcodec=video.get("codec_name"),
        acodec=audio.get("codec_name") if audio else None,
        video_stream=video["index"],
        audio_stream=audio["index"] if audio else None,
    )
