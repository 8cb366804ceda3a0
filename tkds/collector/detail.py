"""Detail: each video's page over httpx (HTTP/2, through the proxies), its embedded JSON parsed and stored."""

from __future__ import annotations

import asyncio
import itertools
import ssl
from pathlib import Path

import httpx

from tkds.collector.browser import BrowserError, BrowserSession
from tkds.collector.outcome import FINAL_STATUSES, MAX_ATTEMPTS, STATUS_REASONS, CollectSummary, pause
from tkds.collector.parse import CaptureError, parse_page
from tkds.collector.politeness import CircuitBreaker, RateLimiter, backoff_s
from tkds.collector.records import Parsed
from tkds.collector.store import Store
from tkds.tiktok import STATUS_OK, WEB_HOST, video_page_url

UPSERT_BATCH = 64  # video pages per transaction: one page per upsert costs ~30 ms of DuckDB, 64 ~1 ms each
DETAIL_MODES = ("auto", "always", "never")

# What a listing item must carry for its video page to add nothing the store keeps or the builder
# selects (create_time, duration, size, the media URLs: a video's play URL, a photo post's image and
# sound URLs; the stats snapshots, who made it with what sound). TikTok's listing items are the same
# item struct as the page's, so on a full item the page is a second request for the same fields; the
# optional ones (location, isAd, verified, private, signature, the sound's author and length) are kept
# as the listing gives them.
REQUIRED_VIDEO = ("author_id", "music_id", "description", "create_time", "duration_s", "width", "height")
REQUIRED_VIDEO_STATS = ("plays", "likes", "comments", "shares", "collects")
REQUIRED_AUTHOR = ("unique_id", "sec_uid", "nickname")
REQUIRED_AUTHOR_STATS = ("followers", "following", "hearts", "videos")
REQUIRED_MUSIC = ("title",)


def complete_items(parsed: Parsed) -> set[str]:
    """Ids of the listed videos whose item holds every required field: their page need not be fetched."""

    def full(record: object | None, fields: tuple[str, ...]) -> bool:
        return record is not None and all(getattr(record, name) is not None for name in fields)

    stats = {s.video_id: s for s in parsed.video_stats}
    authors = {a.id: a for a in parsed.authors}
    author_stats = {s.author_id: s for s in parsed.author_stats}
    music = {m.id: m for m in parsed.music}

    def media_urls(video) -> bool:  # a video's play URL; a photo post's images and its sound's URL
        if video.kind == "photo":
            return bool(video.images) and getattr(music.get(video.music_id), "play_url", None) is not None
        return video.play_url is not None

    return {
        v.id
        for v in parsed.videos
        if full(v, REQUIRED_VIDEO)
        and media_urls(v)
        and full(stats.get(v.id), REQUIRED_VIDEO_STATS)
        and full(authors.get(v.author_id), REQUIRED_AUTHOR)
        and full(author_stats.get(v.author_id), REQUIRED_AUTHOR_STATS)
        and full(music.get(v.music_id), REQUIRED_MUSIC)
    }


class Details:
    """The collector's detail stage (a mixin of `Collector`, which sets these attributes)."""

    store: Store
    summary: CollectSummary
    breaker: CircuitBreaker
    limiter: RateLimiter
    concurrency: int
    proxies: list[str | None]
    ca_cert: Path | None
    pending: list[tuple[str, Parsed]]  # fetched video pages not yet in the store

    def flush(self) -> None:
        """Upsert the buffered video pages in one transaction, then mark them done."""
        if not self.pending:
            return
        merged = Parsed()
        for _, parsed in self.pending:
            merged.extend(parsed)
        with self.store.transaction():
            counts = self.store.upsert(merged.deduplicated(), source="video-page")
            self.store.mark_done("video", [video_id for video_id, _ in self.pending])
        self.summary.add(counts)
        self.summary.collected.update(video_id for video_id, _ in self.pending)
        self.pending.clear()

    # --- detail
    async def detail(
        self, client: httpx.AsyncClient, browser: BrowserSession, video_id: str, user: str, refresh: bool
    ) -> None:
        """Fetch one video page. A failure marks a pending video failed (a later run retries it); a
        `refresh` of a video already collected keeps it done."""
        url = video_page_url(user, video_id)
        reason = "unknown"
        for attempt in range(MAX_ATTEMPTS):
            await self.limiter.wait(WEB_HOST)
            try:
                response = await client.get(url)
            except httpx.HTTPError as error:
                reason = f"connection: {type(error).__name__}"
                await pause(attempt)
                continue
            if response.status_code == 429 or response.status_code >= 500:
                reason = f"http {response.status_code}"
                await pause(attempt, response.headers.get("retry-after"))
                continue
            if response.url.path == "/login":
                reason = "login_required"
                break
            try:
                parsed = parse_page(response.text)
            except CaptureError as error:
                reason = error.kind
                if error.kind == "challenge":
                    await self.solve_challenge(browser, client, url)
                    continue
                if error.kind == "empty":
                    await self.breaker.failure("empty bodies")
                await pause(attempt)
                continue
            if parsed.status != STATUS_OK:
                reason = STATUS_REASONS.get(parsed.status, f"status {parsed.status}")
                if parsed.status in FINAL_STATUSES:
                    break
                await self.breaker.failure("blocked")
                await pause(attempt)
                continue
            self.breaker.success()
            self.summary.census.add(parsed, "video pages")
            self.pending.append((video_id, parsed))
            if len(self.pending) >= UPSERT_BATCH:
                self.flush()
            self.summary.details_ok += 1
            return
        status = "done" if refresh else "failed"
        self.store.update_target("video", video_id, status=status, error=reason, attempted=not refresh)
        self.summary.detail_failures[reason] += 1

    async def solve_challenge(self, browser: BrowserSession, client: httpx.AsyncClient, url: str) -> None:
        """Let the browser's page solve the challenge; its cookie then serves httpx too."""
        try:
            await browser.goto(url)
        except BrowserError as error:
            await asyncio.sleep(backoff_s(0, error.retry_after))
        _share_cookies(await browser.cookies(), client)

    async def fetch_details(self, browser: BrowserSession, work: list[tuple[str, str, bool]], bar) -> None:
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=self.ca_cert) if self.ca_cert else True
        )

        async def count(request: httpx.Request) -> None:  # redirects included: each is a request
            self.summary.requests.count(str(request.url))

        clients = [
            httpx.AsyncClient(
                http2=True, proxy=p, verify=verify, timeout=30, event_hooks={"request": [count]}
            )
            for p in self.proxies
        ]
        cookies = await browser.cookies()
        for client in clients:
            _share_cookies(cookies, client)
        pool = itertools.cycle(clients)
        gate = asyncio.Semaphore(self.concurrency)

        async def one(video_id: str, user: str, refresh: bool) -> None:
            async with gate:
                await self.detail(next(pool), browser, video_id, user, refresh)
            bar.advance(0)

        try:
            await asyncio.gather(*(one(*item) for item in work))
        finally:
            self.flush()
            for client in clients:
                await client.aclose()


def _share_cookies(cookies: list[dict], client: httpx.AsyncClient) -> None:
    for c in cookies:
        client.cookies.set(c["name"], c["value"], domain=c["domain"], path=c.get("path", "/"))
