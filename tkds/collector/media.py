"""Media: downloaded from the play URL the collector holds (else with yt-dlp's TikTok extractor),
probed in this process (PyAV: every packet demuxed, none decoded), hashed, renamed into place. A photo
post's images and sound, which yt-dlp cannot fetch, are downloaded directly from the URLs of its item
(`download_photo`).

The listing or video page already gave each video a signed play URL; fetched directly, with the
session's cookies and a TikTok Referer, it costs one request. Only a URL TikTok refuses (expired,
403) sends the video to yt-dlp, whose extractor fetches the page again for a fresh one.

Files land in MEDIA/.partial first; only a file that probes as whole video is renamed to MEDIA/ID.mp4,
so the media folder never holds a half file, and a killed run's leftovers are swept at the next start.
A photo post's files are MEDIA/ID-NN.EXT (its images in slideshow order, EXT from their content) and
MEDIA/ID.EXT for its sound (mp3, m4a, …: never a video suffix), moved in only once every one is checked.
MEDIA/.partial is private (0700): yt-dlp's cookie file, which holds the session's cookies, lives there
(0600) only while downloads run, and a killed run's is swept with the rest.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import yt_dlp
from PIL import Image, UnidentifiedImageError

from tkds import ids
from tkds.collector.outcome import RequestCount
from tkds.collector.parse import CaptureError, parse_page
from tkds.collector.politeness import RateLimiter, backoff_s
from tkds.files import file_sha256
from tkds.tiktok import VIDEO_CDN_HOST, WEB_HOST, is_tiktok_url, video_page_url

PARTIAL_DIR = ".partial"
REFERER = "https://www.tiktok.com/"  # TikTok's CDN refuses media requests without it
CHUNK_BYTES = 1 << 20


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
    images: list[ImageFile] = field(default_factory=list)  # a photo post's, in slideshow order


@dataclass
class ImageFile:
    """One checked image of a photo post, in place under MEDIA."""

    position: int
    path: str
    sha256: str
    bytes: int
    width: int
    height: int


class _Quiet:
    def debug(self, message: str) -> None: ...

    def warning(self, message: str) -> None: ...

    def error(self, message: str) -> None: ...


def sweep_partials(media_dir: Path) -> None:
    """Remove what a killed run left half-written, its cookie file included."""
    shutil.rmtree(media_dir / PARTIAL_DIR, ignore_errors=True)
    # Earlier versions kept the cookie file in a temp folder, which a kill -9 left behind.
    for legacy in Path(tempfile.gettempdir()).glob("tkds-cookies-*"):
        if legacy.is_dir() and not legacy.is_symlink() and legacy.stat().st_uid == os.getuid():
            shutil.rmtree(legacy, ignore_errors=True)


def private_partial_dir(media_dir: Path) -> Path:
    """MEDIA/.partial, readable by this user only."""
    partial_dir = media_dir / PARTIAL_DIR
    partial_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial_dir.chmod(0o700)  # mkdir's mode is masked by the umask, and the folder may predate this run
    return partial_dir


@contextmanager
def cookie_file(cookies: list[dict], media_dir: Path) -> Iterator[Path]:
    """`cookies` as a cookies.txt for yt-dlp (mode 0600, in the private .partial folder), removed when
    the block ends; after a kill -9, the next run's `sweep_partials` removes it."""
    handle, name = tempfile.mkstemp(prefix="cookies-", suffix=".txt", dir=private_partial_dir(media_dir))
    os.close(handle)
    path = Path(name)
    try:
        write_cookie_file(cookies, path)
        yield path
    finally:
        path.unlink(missing_ok=True)


def write_cookie_file(cookies: list[dict], path: Path) -> None:
    """Playwright cookies as a Netscape cookies.txt."""
    lines = ["# Netscape HTTP Cookie File"]
    for c in cookies:
        domain = c["domain"]
        prefix = "#HttpOnly_" if c.get("httpOnly") else ""
        expires = int(c.get("expires") or 0) if (c.get("expires") or 0) > 0 else 0
        flag = "TRUE" if domain.startswith(".") else "FALSE"
        secure = "TRUE" if c.get("secure") else "FALSE"
        lines.append(f"{prefix}{domain}\t{flag}\t{c['path']}\t{secure}\t{expires}\t{c['name']}\t{c['value']}")
    path.write_text("\n".join(lines) + "\n")


MAX_STREAMS = 64  # more is no camera's or app's upload; FFmpeg stops allocating them one past this
PROBE_OPTIONS = {"max_streams": str(MAX_STREAMS + 1)}
BOX_TYPE = re.compile(rb"[A-Za-z0-9 \xa9]{4}")  # an ISO-BMFF box's four-character type
MAX_TOP_BOXES = 100_000  # a fragmented mp4 has two per fragment; past this the box check gives up


def probe(path: Path) -> dict:
    """ffprobe's view of a file (`-show_streams -show_format -count_packets`, in its json shape) for the
    fields tkds reads, taken in this process with PyAV: every packet is demuxed, none decoded, so that
    a cut-off file shows. A file that is not whole media raises ValueError with a one-line reason,
    FFmpeg's error as `ffprobe -v error` printed it (without the path)."""
    av = _pyav()
    with av.logging.Capture() as errors:  # FFmpeg's errors on this thread, while it reads this file
        try:
            facts = _demux(av, Path(path))
        except av.FFmpegError as error:
            raise ValueError(_ffmpeg_reason(error, errors)) from None
    if errors:  # FFmpeg read on past a fault (a cut-off Matroska file, a partial mp4 sample)
        raise ValueError(_log_line(errors[-1]))
    if facts["format"]["format_name"].startswith("mov,") and (box := _cut_off_box(Path(path))):
        # FFmpeg 8 reads on through an index (moov) cut short and finds fewer packets; 5.1 refused it
        raise ValueError(f"partial file: its {box} box ends past the end of the file")
    return facts


@cache
def _pyav():
    """PyAV, set to hand FFmpeg's errors to `probe`'s capture (it loads FFmpeg's libraries: ~0.2 s, so
    only a process that probes pays for it)."""
    import av

    av.logging.set_level(av.logging.ERROR)
    av.logging.set_skip_repeated(False)  # the same error in two files must show in both
    return av


def _demux(av, path: Path) -> dict:
    # "file:" so that no name is read as a protocol ("concat:a|b"). A local file's playlist (HLS posing
    # as mp4) may only name local files: FFmpeg's default whitelist for it is file, crypto, data.
    with av.open(f"file:{path.absolute()}", options=PROBE_OPTIONS) as container:
        streams = list(container.streams)
        if len(streams) > MAX_STREAMS:
            raise ValueError(f"more than {MAX_STREAMS} streams")
        packets = [0] * len(streams)
        for packet in container.demux():
            if packet.size:  # not the empty packet PyAV appends to each stream at the end
                packets[packet.stream_index] += 1
        return {
            "streams": [_stream_facts(stream, count) for stream, count in zip(streams, packets, strict=True)],
            "format": _drop_none(
                {
                    "format_name": container.format.name,
                    "nb_streams": len(streams),
                    "duration": _seconds(container.duration, 1e-6),
                }
            ),
        }


def _cut_off_box(path: Path) -> str | None:
    """The type of the first top-level ISO-BMFF box (mp4, m4a, mov) that claims more bytes than the
    file holds; None when every box fits, or when the file's tail is no box (left to FFmpeg)."""
    size, offset = path.stat().st_size, 0
    with path.open("rb") as file:
        for _ in range(MAX_TOP_BOXES):
            file.seek(offset)
            header = file.read(16)
            if len(header) < 8 or not BOX_TYPE.fullmatch(header[4:8]):
                return None
            length = int.from_bytes(header[:4])
            if length == 1 and len(header) == 16:  # a 64-bit size follows the type
                length = int.from_bytes(header[8:16])
            if length < 8:  # 0: the box runs to the end of the file; 1 to 7: not a size FFmpeg reads
                return None
            if offset + length > size:
                return header[4:8].decode("latin-1")
            offset += length
    return None


def _stream_facts(stream, packets: int) -> dict:
    """One stream as ffprobe's json gives it: absent fields are left out, numbers stay ffprobe's types."""
    context = stream.codec_context
    codec = context.codec if context is not None else None
    facts = {
        "index": stream.index,
        "codec_name": codec.canonical_name if codec is not None else None,
        "codec_type": stream.type,
        "disposition": {name: int(flag in stream.disposition) for name, flag in _disposition_flags().items()},
        "duration": _seconds(stream.duration, stream.time_base),
        "nb_frames": str(stream.frames) if stream.frames else None,
        "nb_read_packets": str(packets),
    }
    rate = stream.average_rate if stream.type == "video" else None
    facts["avg_frame_rate"] = f"{rate.numerator}/{rate.denominator}" if rate else "0/0"
    if stream.type == "video":
        facts |= {"width": context.width or None, "height": context.height or None}
    elif stream.type == "audio":
        facts |= {"channels": context.channels or None, "sample_rate": str(context.sample_rate or 0)}
    return _drop_none(facts)


def _seconds(ticks: int | None, unit) -> str | None:
    return f"{float(ticks * unit):.6f}" if ticks is not None else None


def _drop_none(facts: dict) -> dict:
    return {key: value for key, value in facts.items() if value is not None}


def _ffmpeg_reason(error: Exception, errors: list) -> str:
    """FFmpeg's failure as one short line without the file's path: its error code's text, then what it
    logged last."""
    if any("max_streams" in message for _, _, message in errors):
        return f"more than {MAX_STREAMS} streams"
    reason = getattr(error, "strerror", None) or type(error).__name__
    return f"{reason} ({_log_line(errors[-1])})" if errors else str(reason)


def _log_line(log: tuple[int, str, str]) -> str:
    return " ".join(log[2].split())[:200]


@cache
def _disposition_flags() -> dict:
    from av.stream import Disposition

    return dict(Disposition.__members__)


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
    (re.compile(r"connection (reset|refused|aborted)|timed out|Errno 10[34]\b", re.I), "connection"),
    (re.compile(r"Unexpected response from webpage", re.I), "empty"),
)
# Failures that the same request, tried again a little later, may not meet.
TRANSIENT_ERRORS = frozenset({"rate_limited", "server_error", "truncated", "connection", "empty"})
CALL_ATTEMPTS = 5  # tries of each request (the page, then the media file) within one download


def _classify(message: str) -> str:
    return next((reason for pattern, reason in FAILURE_PATTERNS if pattern.search(message)), "download_error")


_per_thread = threading.local()


class _CountingYoutubeDL(yt_dlp.YoutubeDL):
    """A YoutubeDL that counts every request it makes (its page fetch, the media, their retries)."""

    requests: RequestCount | None = None

    def urlopen(self, req):
        if self.requests is not None:
            self.requests.count(req if isinstance(req, str) else getattr(req, "url", "") or req.full_url)
        return super().urlopen(req)


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
        cache[key] = _CountingYoutubeDL({k: v for k, v in options.items() if v is not None})
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
    requests: RequestCount | None = None,
) -> MediaResult:
    """Download one video's mp4 through yt-dlp (blocking; run it in a worker thread).

    The page and the media file are each retried through transient failures, so that a fault on one
    does not cost the other. Every failure, whatever raised it, comes back as a failed `MediaResult`
    with a reason."""
    try:
        ydl = _downloader(private_partial_dir(media_dir), proxy, trust_proxy_ca, cookie_file)
        ydl.requests = requests
        page_url = video_page_url(unique_id, video_id)
        info = _retrying(lambda: ydl.extract_info(page_url, download=False), limiter, WEB_HOST)
        done = _retrying(
            lambda: ydl.process_ie_result(copy.deepcopy(info), download=True), limiter, VIDEO_CDN_HOST
        )
        downloaded = Path(done["requested_downloads"][0]["filepath"])
    except _Failed as failed:
        return MediaResult(video_id, "failed", failed.reason)
    except OSError as error:  # the .partial folder cannot be made
        return MediaResult(video_id, "failed", _classify(str(error)))
    try:
        return inspect(video_id, downloaded, media_dir / f"{video_id}.mp4")
    except OSError as error:  # a full disk while hashing or renaming, a folder removed under us
        downloaded.unlink(missing_ok=True)
        return MediaResult(video_id, "failed", _classify(str(error)))


def media_client(
    cookies: list[dict], proxy: str | None, ca_cert: Path | None, requests: RequestCount
) -> httpx.Client:
    """An HTTP client for play URLs: the browser session's cookies (TikTok's CDN wants tt_chain_token),
    a TikTok Referer, the proxy and its CA; every request it makes is counted."""
    client = httpx.Client(
        proxy=proxy,
        verify=ssl.create_default_context(cafile=ca_cert) if ca_cert else True,
        timeout=60,
        headers={"Referer": REFERER},
        event_hooks={"request": [lambda request: requests.count(str(request.url))]},
    )
    for c in cookies:
        client.cookies.set(c["name"], c["value"], domain=c["domain"], path=c.get("path", "/"))
    return client


class Refused(Exception):
    """The CDN refused the play URL (expired, or not this session's): yt-dlp must find a fresh one."""


def download_direct(
    video_id: str, play_url: str, media_dir: Path, *, client: httpx.Client, limiter: RateLimiter
) -> MediaResult:
    """Download one video's mp4 from its play URL (blocking; run it in a worker thread).

    Transient failures are retried; a 4xx other than 429 raises `Refused`. Every other failure comes
    back as a failed `MediaResult` with a reason, as `download`'s do."""
    partial = private_partial_dir(media_dir) / f"{video_id}.direct.mp4"
    try:
        reason = _fetch_retrying(client, play_url, partial, limiter)
        if reason == "ok":
            return inspect(video_id, partial, media_dir / f"{video_id}.mp4")
    except OSError as error:  # a full disk while writing, hashing or renaming
        reason = _classify(str(error))
    partial.unlink(missing_ok=True)
    return MediaResult(video_id, "failed", reason)


def _fetch_retrying(client: httpx.Client, url: str, path: Path, limiter: RateLimiter) -> str:
    """GET `url` into `path` behind the limiter, retrying transient failures with backoff: "ok" or the
    last reason; a refused URL (4xx other than 429) raises `Refused`."""
    host = urlsplit(url).hostname or VIDEO_CDN_HOST
    reason = "download_error"
    for attempt in range(CALL_ATTEMPTS):
        if attempt:
            time.sleep(backoff_s(attempt - 1))
        limiter.wait_blocking(host)
        try:
            reason = _fetch_to(client, url, path)
        except httpx.HTTPError:  # a reset, a timeout, a body cut short of its Content-Length
            reason = "connection"
        if reason == "ok" or reason not in TRANSIENT_ERRORS:
            return reason
    return reason


def _fetch_to(client: httpx.Client, url: str, path: Path) -> str:
    """GET `url` into `path`: "ok", or a failure reason as `_classify` names them."""
    with client.stream("GET", url) as response:
        status = response.status_code
        if status == 429:
            return "rate_limited"
        if status >= 500:
            return "server_error"
        if 400 <= status < 500:
            raise Refused(f"http {status}")
        if status != 200:
            return "download_error"
        expected = response.headers.get("content-length")
        written = 0
        with path.open("wb") as out:
            for chunk in response.iter_bytes(CHUNK_BYTES):
                out.write(chunk)
                written += len(chunk)
    if expected is not None and expected.isdigit() and written != int(expected):
        return "truncated"
    return "ok" if written else "empty"


class _Failed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _retrying(call: Callable[[], dict], limiter: RateLimiter, host: str) -> dict:
    """`call()` after the host's rate, tried again with backoff while it fails transiently."""
    attempt = 0
    while True:
        limiter.wait_blocking(host)
        try:
            return call()
        except Exception as error:  # yt-dlp's extractors raise more than YoutubeDLError
            reason = _classify(str(error))
            attempt += 1
            if reason not in TRANSIENT_ERRORS or attempt == CALL_ATTEMPTS:
                raise _Failed(reason) from None
        time.sleep(backoff_s(attempt - 1))


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
    digest = file_sha256(source)
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


# --- photo posts: images and a sound, straight from the CDN URLs of the post's item
IMAGE_SUFFIXES = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}  # Pillow's format -> file suffix
# FFmpeg's format_name -> the sound's suffix; none is a video suffix that `tkds import --media` reads
SOUND_SUFFIXES = {"mp3": "mp3", "mov,mp4,m4a,3gp,3g2,mj2": "m4a", "ogg": "ogg", "wav": "wav",
                  "flac": "flac", "aac": "aac", "matroska,webm": "mka"}  # fmt: skip
REFUSED_REASONS = {403: "forbidden", 404: "unavailable", 410: "unavailable"}
PhotoUrls = tuple[list[list[str]], str | None]  # each image's CDN alternates, in order; the sound's URL


def _tiktok_urls(value: object) -> list[str]:
    """The https URLs on TikTok hosts in a URL, a list of them, or {"urlList": [...]}."""
    if isinstance(value, dict):
        value = value.get("urlList")
    urls = value if isinstance(value, list) else [value]
    return [url for url in urls if is_tiktok_url(url)]


def photo_urls(images: object, play_url: object, stored: list[str] = ()) -> PhotoUrls:
    """A photo post's URLs from its item's `imagePost.images` and `music.playUrl` (JSON values), else
    from the first URLs `stored` for its images; only https URLs on TikTok hosts are kept."""
    alternates = [
        _tiktok_urls(image.get("imageURL") if isinstance(image, dict) else None)
        for image in (images if isinstance(images, list) else [])
    ]
    if not alternates:
        alternates = [_tiktok_urls(url) for url in stored]
    sound = _tiktok_urls(play_url)
    return alternates, sound[0] if sound else None


def fresh_photo_urls(
    client: httpx.Client, unique_id: str, video_id: str, limiter: RateLimiter
) -> PhotoUrls | None:
    """A photo post's URLs from its page fetched now (its /video/ URL serves the post), for when the
    held ones were refused (expired); None when the page gives none."""
    limiter.wait_blocking(WEB_HOST)
    try:
        response = client.get(video_page_url(unique_id, video_id))
        parsed = parse_page(response.text) if response.status_code == 200 else None
    except (httpx.HTTPError, CaptureError):
        return None
    item = next((v.raw for v in (parsed.videos if parsed else []) if v.id == video_id), None)
    if not isinstance(item, dict):
        return None
    images = item.get("imagePost", {}).get("images") if isinstance(item.get("imagePost"), dict) else None
    music = item.get("music") if isinstance(item.get("music"), dict) else {}
    urls = photo_urls(images, music.get("playUrl"))
    return urls if urls[0] else None


def check_image(path: Path) -> tuple[str, int, int]:
    """(suffix, width, height) of a whole image that Pillow decodes; ValueError saying why not."""
    try:
        with Image.open(path) as image:
            image.verify()  # the container's structure
        with Image.open(path) as image:
            image.load()  # every pixel: a cut-off body shows here
            suffix, (width, height) = IMAGE_SUFFIXES.get(image.format or ""), image.size
    except (UnidentifiedImageError, Image.DecompressionBombError, SyntaxError, ValueError) as error:
        raise ValueError(f"not an image ({type(error).__name__})") from None
    except OSError as error:  # Pillow's "image file is truncated" and broken-data errors
        if error.errno is not None:  # a real I/O error (a full disk, a vanished file) is not the file's fault
            raise
        raise ValueError(str(error) or "broken image data") from None
    if suffix is None:
        raise ValueError(f"an image in {image.format} format, not JPEG, PNG or WebP")
    if width < 1 or height < 1:
        raise ValueError(f"an image of {width}x{height} px")
    return suffix, width, height


def _fetch_alternates(client: httpx.Client, urls: list[str], path: Path, limiter: RateLimiter) -> str:
    """GET the first of `urls` (CDN alternates of one file) that answers into `path`: "ok" or a reason.

    Transient failures are retried with backoff; a refused URL (4xx) moves on to the next alternate."""
    reason = "download_error"
    for url in urls:
        if not is_tiktok_url(url):
            reason = "bad_url: not an https URL on a TikTok host"
            continue
        try:
            reason = _fetch_retrying(client, url, path, limiter)
        except Refused as refused:
            status = int(str(refused).removeprefix("http "))
            reason = f"{REFUSED_REASONS.get(status, 'download_error')}: http {status}"
            continue
        if reason == "ok" or reason not in TRANSIENT_ERRORS:
            return reason
    return reason


def download_photo(
    video_id: str,
    image_urls: list[list[str]],
    sound_url: str | None,
    media_dir: Path,
    *,
    client: httpx.Client,
    limiter: RateLimiter,
) -> MediaResult:
    """Download a photo post's images (each URL list holds one image's CDN alternates) and its sound.

    Each image must decode whole (Pillow) and the sound must hold an audio stream (`probe`); only
    then are they hashed and moved into MEDIA. The media row's path, sha256, duration and codec are
    the sound's (None when the post has no sound URL), `bytes` counts all its files, width and height
    are the first image's. Every failure is a failed `MediaResult` naming the file and the reason."""
    if not image_urls:
        return MediaResult(video_id, "failed", "no_images: its item lists no image URLs")
    partial_dir = private_partial_dir(media_dir)
    fetched: list[Path] = []
    try:
        checked = []
        for position, alternates in enumerate(image_urls):
            partial = ids.id_path(partial_dir, video_id, f"-{position:02d}.image")
            fetched.append(partial)
            reason = _fetch_alternates(client, alternates, partial, limiter)
            if reason != "ok":
                return _photo_failure(video_id, reason, f"image {position}")
            try:
                checked.append((partial, *check_image(partial)))
            except ValueError as error:
                return MediaResult(video_id, "failed", f"undecodable: image {position}: {error}")
        sound, audio, facts = None, None, {}
        if sound_url is not None:
            sound = ids.id_path(partial_dir, video_id, ".sound")
            fetched.append(sound)
            reason = _fetch_alternates(client, [sound_url], sound, limiter)
            if reason != "ok":
                return _photo_failure(video_id, reason, "its sound")
            try:
                facts = probe(sound)
            except ValueError as error:
                return MediaResult(video_id, "failed", f"undecodable: its sound: {error}")
            audio = choose_streams(facts)[1]
            suffix = SOUND_SUFFIXES.get(facts.get("format", {}).get("format_name", ""))
            if audio is None or suffix is None:
                return MediaResult(video_id, "failed", "undecodable: its sound is not an audio file")
        return _place_photo(video_id, media_dir, checked, sound, audio, facts)
    except OSError as error:  # a full disk while writing, hashing or renaming
        return MediaResult(video_id, "failed", _classify(str(error)))
    finally:
        for partial in fetched:
            partial.unlink(missing_ok=True)


def _photo_failure(video_id: str, reason: str, what: str) -> MediaResult:
    kind, _, detail = reason.partition(": ")
    return MediaResult(video_id, "failed", f"{kind}: {what}" + (f" ({detail})" if detail else ""))


def _place_photo(
    video_id: str,
    media_dir: Path,
    checked: list[tuple[Path, str, int, int]],
    sound: Path | None,
    audio: dict | None,
    facts: dict,
) -> MediaResult:
    """Hash the checked files and move them to MEDIA/ID-NN.EXT and MEDIA/ID.EXT."""
    images = []
    for position, (partial, suffix, width, height) in enumerate(checked):
        final = ids.id_path(media_dir, video_id, f"-{position:02d}.{suffix}")
        digest = file_sha256(partial)
        os.replace(partial, final)
        images.append(ImageFile(position, str(final.resolve()), digest, final.stat().st_size, width, height))
    result = MediaResult(
        video_id,
        "ok",
        bytes=sum(image.bytes for image in images),
        width=images[0].width,
        height=images[0].height,
        has_audio=audio is not None,
        images=images,
    )
    if sound is not None and audio is not None:
        suffix = SOUND_SUFFIXES[facts["format"]["format_name"]]
        final = ids.id_path(media_dir, video_id, f".{suffix}")
        result.sha256 = file_sha256(sound)
        os.replace(sound, final)
        result.path, result.bytes = str(final.resolve()), result.bytes + final.stat().st_size
        result.duration_s = duration_of(facts, audio)
        result.acodec, result.audio_stream = audio.get("codec_name"), audio["index"]
    return result
