"""What the collector's stages share: retry bounds, failure reasons, and the run's summary."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tkds.collector.drift import FieldCensus
from tkds.collector.politeness import backoff_s
from tkds.tiktok import (
    IMAGE_CDN_HOST,
    MUSIC_CDN_HOST,
    STATUS_PRIVATE_ACCOUNT,
    STATUS_PRIVATE_ITEM,
    STATUS_UNAVAILABLE,
    STATUS_USER_NOT_FOUND,
    VIDEO_CDN_HOST,
    is_tiktok_host,
)

MAX_ATTEMPTS = 5  # tries of one network call within a run, with backoff between them
MAX_TARGET_RUNS = 5  # runs that try a listing or video target before a failed one is left alone
STATUS_REASONS = {
    STATUS_UNAVAILABLE: "unavailable",
    STATUS_PRIVATE_ITEM: "private",
    STATUS_PRIVATE_ACCOUNT: "private_account",
    STATUS_USER_NOT_FOUND: "user_not_found",
}
FINAL_STATUSES = {STATUS_PRIVATE_ITEM, STATUS_PRIVATE_ACCOUNT, STATUS_USER_NOT_FOUND}
# Failure reasons that another run cannot fix: such targets are not retried.
PERMANENT_REASONS = frozenset({"private", "private_account", "user_not_found", "login_required"})


class TargetFailed(Exception):
    """A target (or one call for it) that failed after its retries; `reason` is what to record."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def retryable(attempts: int, reason: str | None) -> bool:
    """Whether a failed listing or video target is tried again by a later run."""
    return attempts < MAX_TARGET_RUNS and reason not in PERMANENT_REASONS


def owed_text(owed: Counter) -> str:
    """Owed work by reason, as in "3 (2 http 429, 1 empty)", or "none"."""
    if not owed:
        return "none"
    return f"{sum(owed.values())} ({', '.join(f'{n} {reason}' for reason, n in owed.most_common())})"


REQUEST_KINDS = ("pages", "api", "media", "images")


def request_kind(url: str) -> str | None:
    """What a request to TikTok is for: "pages", "api", "media", "images" (or "other", such as a
    monitoring beacon); None for a host that is not TikTok's, which TikTok does not see."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not is_tiktok_host(host):
        return None
    if parts.path.startswith("/api/"):
        return "api"
    if host in (VIDEO_CDN_HOST, MUSIC_CDN_HOST) or parts.path.startswith("/video/tos/"):
        return "media"
    if host == IMAGE_CDN_HOST or host.startswith("p16-") or host.startswith("p19-"):
        return "images"
    if host.endswith("tiktok.com") and not host.startswith("mon"):
        return "pages"
    return "other"


class RequestCount:
    """Requests to TikTok's hosts by kind, counted where they leave (threads and tasks alike)."""

    def __init__(self) -> None:
        self.by_kind: Counter = Counter()
        self._lock = threading.Lock()

    def count(self, url: str) -> None:
        kind = request_kind(url)
        if kind is not None:
            with self._lock:
                self.by_kind[kind] += 1

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())


@dataclass
class CollectSummary:
    targets_done: int = 0
    targets_failed: dict[str, str] = field(default_factory=dict)
    videos_new: int = 0
    videos_updated: int = 0
    details_ok: int = 0
    detail_failures: Counter = field(default_factory=Counter)
    media_ok: int = 0
    media_bytes: int = 0
    media_failures: Counter = field(default_factory=Counter)
    comments: int = 0
    # still to fetch on a later run, by last failure reason
    targets_owed: Counter = field(default_factory=Counter)
    videos_owed: Counter = field(default_factory=Counter)
    media_owed: Counter = field(default_factory=Counter)
    wall_s: float = 0.0
    stage_s: dict[str, float] = field(default_factory=dict)  # discover, detail, comments, media
    requests: RequestCount = field(default_factory=RequestCount)
    collected: set[str] = field(default_factory=set)  # ids of the videos this run stored
    details_skipped: int = 0  # listing items complete enough that their page was not fetched
    media_fallbacks: int = 0  # downloads left to yt-dlp's extractor: the play URL expired or was refused
    census: FieldCensus = field(default_factory=FieldCensus)  # expected fields missing, unseen keys
    warnings: list[str] = field(default_factory=list)  # payload drift, one line each
    photo_posts_ok: int = 0  # of media_ok: photo posts, downloaded as their images and sound
    photo_images: int = 0
    photo_refetches: int = 0  # photo posts whose page was fetched again: the CDN refused their URLs

    @property
    def requests_per_video(self) -> float | None:
        """Requests to TikTok per video this run stored; None when it stored none."""
        return self.requests.total / len(self.collected) if self.collected else None

    def add(self, counts: dict[str, int]) -> None:
        self.videos_new += counts["new"]
        self.videos_updated += counts["updated"]

    def as_dict(self) -> dict:
        return {
            "targets_done": self.targets_done,
            "targets_failed": self.targets_failed,
            "videos_new": self.videos_new,
            "videos_updated": self.videos_updated,
            "details_ok": self.details_ok,
            "detail_failures": dict(self.detail_failures),
            "media_ok": self.media_ok,
            "media_bytes": self.media_bytes,
            "media_failures": dict(self.media_failures),
            "comments": self.comments,
            "targets_owed": dict(self.targets_owed),
            "videos_owed": dict(self.videos_owed),
            "media_owed": dict(self.media_owed),
            "wall_s": round(self.wall_s, 3),
            "stage_s": {k: round(v, 3) for k, v in self.stage_s.items()},
            "requests": {kind: self.requests.by_kind[kind] for kind in (*REQUEST_KINDS, "other")},
            "requests_total": self.requests.total,
            "videos_collected": len(self.collected),
            "requests_per_video": (
                None if self.requests_per_video is None else round(self.requests_per_video, 4)
            ),
            "details_skipped": self.details_skipped,
            "media_fallbacks": self.media_fallbacks,
            "fields": self.census.as_dict(),
            "warnings": list(self.warnings),
            "photo_posts_ok": self.photo_posts_ok,
            "photo_images": self.photo_images,
            "photo_refetches": self.photo_refetches,
        }


async def pause(attempt: int, retry_after: str | None = None) -> None:
    """Back off after failed try `attempt` of MAX_ATTEMPTS, unless it was the last."""
    if attempt < MAX_ATTEMPTS - 1:
        await asyncio.sleep(backoff_s(attempt, retry_after))
