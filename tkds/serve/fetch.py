"""A TikTok video URL → its mp4's bytes, downloaded the collector's way (yt-dlp, its proxy and CA)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tkds.serve.predictor import PredictError

# Each fetch has its own limiter, which spaces that fetch's page and media requests.
RATE = 5.0


def fetch_video(url: str, proxy: str | None, ca_cert: Path | None, max_bytes: int) -> bytes:
    """The mp4 behind a TikTok video URL; PredictError (400, 413 or 502) when it cannot be had."""
    from tkds.collector.media import download
    from tkds.collector.politeness import RateLimiter
    from tkds.collector.sources import parse_video_url
    from tkds.errors import TkdsError

    try:
        unique_id, video_id = parse_video_url(url)
    except TkdsError as error:
        raise PredictError(str(error), 400) from error
    with tempfile.TemporaryDirectory(prefix="tkds-serve-") as folder:
        result = download(
            video_id, unique_id, Path(folder), proxy=proxy, trust_proxy_ca=ca_cert is not None,
            cookie_file=None, limiter=RateLimiter(RATE),
        )  # fmt: skip
        if result.status != "ok":
            raise PredictError(
                f"could not fetch {url} ({result.error}); check the link and the proxy "
                "(tkds serve --proxy, --ca-cert), or upload the mp4 instead",
                502,
            )
        if result.bytes > max_bytes:
            raise PredictError(
                f"the video at {url} is {result.bytes / 2**20:.0f} MB, over this server's limit of "
                f"{max_bytes / 2**20:.0f} MB (tkds serve --max-upload-mb)",
                413,
            )
        return Path(result.path).read_bytes()
