"""`tkds collect`: discover (Chromium) → detail (httpx page JSON) → media (httpx, else yt-dlp) → DuckDB.

What TikTok meters is requests per IP, so a run spends about one request per video: the listing
(30 items a call) usually holds every field the store keeps, so a video's page is fetched only when
its item lacks one (`detail="auto"`), and its mp4 comes straight from the play URL the listing gave,
yt-dlp's extractor (a second page fetch) only when TikTok refuses that URL. Every request to TikTok's
hosts is counted by kind in the summary and `crawl_runs`.

Every stage reads its work from `crawl_targets` and writes its results before it marks them done, so
Ctrl-C or kill -9 at any moment, then the same command, ends with the same videos and media.

Every network call is retried within the run (outcome.MAX_ATTEMPTS, with backoff); what still fails
is recorded with its reason and attempt count in `crawl_targets`, and later runs try it again, up to
outcome.MAX_TARGET_RUNS runs for listing and video targets and downloads.MEDIA_GIVE_UP_AFTER tries for
media, unless the reason is one a retry cannot fix. The summary counts what is still owed, by reason.

The stages live in their own modules (discover, detail, downloads); `Collector` orders them.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import itertools
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit

from tkds.collector import drift
from tkds.collector.browser import BrowserError, BrowserSession
from tkds.collector.detail import DETAIL_MODES, UPSERT_BATCH, Details
from tkds.collector.discover import Discovery
from tkds.collector.downloads import MEDIA_GIVE_UP_AFTER, Downloads
from tkds.collector.media import sweep_partials
from tkds.collector.outcome import MAX_TARGET_RUNS, CollectSummary, owed_text, retryable
from tkds.collector.politeness import CircuitBreaker, RateLimiter
from tkds.collector.records import Parsed
from tkds.collector.sources import SOURCES, check_target, parse_video_url
from tkds.collector.store import Store, utcnow
from tkds.console import console, progress_bar
from tkds.engines import check_engine
from tkds.errors import TkdsError
from tkds.files import exclusive_folder
from tkds.ids import preview
from tkds.tiktok import WEB_HOST

# What other modules import from here.
__all__ = [
    "MAX_TARGET_RUNS",
    "UPSERT_BATCH",
    "CollectSummary",
    "collect",
    "owed_text",
    "read_cookies",
    "read_proxies",
]

MAX_CONCURRENCY = 256
PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")


def read_proxies(values: list[str]) -> list[str]:
    """`--proxy` values: URLs, or files with one URL a line."""
    proxies = []
    for value in values:
        path = Path(value)
        if "://" not in value and path.is_file():
            try:
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError as error:
                raise TkdsError(f"cannot read --proxy {path} ({error.strerror}); check the file") from None
            proxies += [line.strip() for line in lines if line.strip()]
        else:
            proxies.append(value)
    for proxy in proxies:
        url = urlsplit(proxy)
        if url.scheme not in PROXY_SCHEMES or not url.hostname:
            raise TkdsError(f"--proxy {preview(proxy)} is not a proxy URL like http://host:port")
    return proxies


def read_cookies(path: Path) -> list[dict]:
    """A Netscape cookies.txt as Playwright cookies."""
    jar = http.cookiejar.MozillaCookieJar()
    try:
        jar.load(str(path), ignore_discard=True, ignore_expires=True)
    except (OSError, http.cookiejar.LoadError, UnicodeDecodeError) as error:
        reason = preview(str(error), 80)
        raise TkdsError(f"cannot read --cookies {path} ({reason}); export them in Netscape format") from None
    return [
        {
            "name": c.name,
            "value": c.value or "",
            "domain": c.domain,
            "path": c.path or "/",
            "secure": c.secure,
        }
        for c in jar
    ]


class Collector(Discovery, Details, Downloads):
    """One run: discovery, then detail, comments and media, each stage in its own module."""

    def __init__(
        self,
        store: Store,
        *,
        limit: int,
        rate: float,
        concurrency: int,
        proxies: list[str],
        ca_cert: Path | None,
        media_dir: Path | None,
        comments: int,
        cookies: list[dict] | None,
        progress: bool,
        detail_mode: str = "auto",
    ) -> None:
        self.store, self.limit, self.concurrency, self.cookies = store, limit, concurrency, cookies
        self.detail_mode = detail_mode
        self.page_required: set[str] = set()
        self.proxies = proxies or [None]
        self.ca_cert, self.media_dir, self.comments, self.progress = ca_cert, media_dir, comments, progress
        self.limiter = RateLimiter(rate)
        self.breaker = CircuitBreaker()
        self.summary = CollectSummary()
        self._proxy_cycle = itertools.cycle(self.proxies)
        self.pending: list[tuple[str, Parsed]] = []  # fetched video pages not yet in the store

    async def run(self, targets: list[tuple[str, str]], urls: list[str], refresh_stats: bool) -> None:
        self.page_required = {parse_video_url(url)[1] for url in urls}
        self.store.add_targets(targets + [("video", video_id) for video_id in sorted(self.page_required)])
        given_up = self.retry_failed()
        async with BrowserSession(
            self.proxies[0], self.ca_cert is not None, self.limiter, self.cookies, self.summary.requests
        ) as browser:
            with (
                self.stage("discover"),
                progress_bar("collect: discover", len(targets), self.progress) as bar,
            ):
                for kind, key in targets:
                    await self.discover(browser, kind, key, given_up)
                    bar.advance(0)

            url_users = dict(reversed(parse_video_url(u)) for u in urls)
            work = [
                (video_id, url_users.get(video_id, user), False)
                for video_id, user in self.store.pending_videos()
            ]
            if refresh_stats:
                fetching = {w[0] for w in work}
                work += [(v, u, True) for v, u in self.store.known_videos() if v not in fetching]
            if not browser.visited_any and (self.media_dir is not None or self.comments):
                await self.open_session(browser)
            with self.stage("detail"), progress_bar("collect: detail", len(work), self.progress) as bar:
                await self.fetch_details(browser, work, bar)

            if self.comments:
                with self.stage("comments"):
                    for video_id, _ in self.store.known_videos():
                        await self.fetch_comments(browser, video_id)

            if self.media_dir is not None:
                with self.stage("media"):
                    await self.download_all(await browser.cookies())
        self.count_owed(targets)

    @staticmethod
    async def open_session(browser: BrowserSession) -> None:
        """Visit the home page for the session's cookies (tt_chain_token), which TikTok's CDN wants on
        play URLs, and for a page to sign comment-list calls from: a run given only video URLs, or one
        whose listings are done, opens no listing."""
        with suppress(BrowserError):  # then media falls back to yt-dlp's extractor
            await browser.goto(f"https://{WEB_HOST}/")

    def retry_failed(self) -> dict[tuple[str, str], str]:
        """Make failed video targets that another run may fix pending again; returns the listing targets
        that are left alone, with their last reason."""
        failed = self.store.failed_targets(["video", *SOURCES])
        videos = [
            key for kind, key, attempts, error in failed if kind == "video" and retryable(attempts, error)
        ]
        self.store.retry_targets("video", videos)
        return {
            (kind, key): error or "failed"
            for kind, key, attempts, error in failed
            if kind != "video" and not retryable(attempts, error)
        }

    def count_owed(self, targets: list[tuple[str, str]]) -> None:
        named = set(targets)
        for kind, key, attempts, error in self.store.failed_targets(["video", *SOURCES]):
            if kind == "video" and retryable(attempts, error):
                self.summary.videos_owed[error or "failed"] += 1
            elif (kind, key) in named and retryable(attempts, error):
                self.summary.targets_owed[error or "failed"] += 1
        if self.media_dir is not None:
            reasons = {key: error for _, key, _, error in self.store.failed_targets(["media"])}
            for video_id, _ in self.store.videos_needing_media(MEDIA_GIVE_UP_AFTER):
                self.summary.media_owed[(reasons.get(video_id) or "not tried").split(":")[0]] += 1

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.summary.stage_s[name] = self.summary.stage_s.get(name, 0.0) + time.perf_counter() - started


def check_options(*, limit: int, rate: float, concurrency: int, comments: int, detail: str = "auto") -> None:
    """Refuse option values the run cannot work with, naming the option and the range."""

    def whole(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if not whole(limit) or limit < 1:
        raise TkdsError(f"--limit must be a whole number of at least 1 (got {limit!r})")
    if not isinstance(rate, int | float) or not math.isfinite(rate) or rate <= 0:
        raise TkdsError(f"--rate must be a positive number of requests a second, e.g. 5 (got {rate!r})")
    if not whole(concurrency) or not 1 <= concurrency <= MAX_CONCURRENCY:
        raise TkdsError(
            f"--concurrency must be a whole number from 1 to {MAX_CONCURRENCY} (got {concurrency!r})"
        )
    if not whole(comments) or comments < 0:
        raise TkdsError(f"--comments must be a whole number, 0 or more (got {comments!r})")
    if detail not in DETAIL_MODES:
        raise TkdsError(f"--detail must be one of {', '.join(DETAIL_MODES)} (got {preview(str(detail))})")


def collect(
    db: str | Path,
    *,
    hashtags: Sequence[str] = (),
    users: Sequence[str] = (),
    music: Sequence[str] = (),
    searches: Sequence[str] = (),
    trending: bool = False,
    urls: Sequence[str] = (),
    limit: int = 100,
    media_dir: str | Path | None = None,
    rate: float = 5.0,
    concurrency: int = 4,
    proxies: Sequence[str] = (),
    ca_cert: str | Path | None = None,
    cookies: str | Path | None = None,
    comments: int = 0,
    refresh_stats: bool = False,
    progress: bool = True,
    detail: str = "auto",
    workers: int = 1,
    engine: str = "local",
    ray_address: str | None = None,
) -> CollectSummary:
    """Collect the named targets into the DuckDB file `db` (and their mp4s into `media_dir`).

    `detail`: "auto" fetches a video's page only when its listing item lacks a field the store needs,
    "always" fetches every page, "never" none (--urls videos' pages are fetched in every mode).
    `workers` > 1 runs that many collector processes, which share `rate` (tkds.collector.workers);
    `engine` "ray" runs those parts as Ray tasks on the cluster at `ray_address` (tkds.engines)."""
    # workers.py builds on this module's Collector
    from tkds.collector.workers import (
        WorkerSettings,
        check_workers,
        collect_in_parts,
        merge_leftover_parts,
        sweep_worker_partials,
    )

    named = {"hashtag": hashtags, "user": users, "music": music, "search": searches}
    targets = [(kind, check_target(kind, key)) for kind, keys in named.items() for key in keys]
    targets += [("trending", "foryou")] if trending else []
    if not targets and not urls and not refresh_stats:
        raise TkdsError(
            "name at least one target: --hashtag, --user, --music, --search, --trending or --urls"
        )
    check_options(limit=limit, rate=rate, concurrency=concurrency, comments=comments, detail=detail)
    check_workers(workers)
    check_engine(engine, ray_address)
    if ca_cert is not None and not Path(ca_cert).is_file():
        raise TkdsError(f"--ca-cert {ca_cert} does not exist; the twin writes it with --ca-out")
    proxy_urls = read_proxies(list(proxies))
    session_cookies = read_cookies(Path(cookies)) if cookies else None
    started, run_started = time.perf_counter(), utcnow()
    with ExitStack() as stack:
        if media_dir is not None:
            # One collector per media folder: another's sweep would delete this one's downloads.
            media_dir = stack.enter_context(exclusive_folder(Path(media_dir), "--media"))
            sweep_partials(media_dir)  # a killed run's half files and cookie file
            sweep_worker_partials(media_dir)
        store = stack.enter_context(Store.open(db))
        merge_leftover_parts(store)  # what the workers of a killed run had stored
        collector = Collector(
            store,
            limit=limit,
            rate=rate,
            concurrency=concurrency,
            proxies=proxy_urls,
            ca_cert=Path(ca_cert) if ca_cert else None,
            media_dir=media_dir,
            comments=comments,
            cookies=session_cookies,
            progress=progress,
            detail_mode=detail,
        )
        try:
            if workers == 1 and engine == "local":
                asyncio.run(collector.run(targets, list(urls), refresh_stats))
            else:
                settings = WorkerSettings(
                    limit=limit,
                    concurrency=concurrency,
                    proxies=proxy_urls,
                    ca_cert=str(Path(ca_cert).resolve()) if ca_cert else None,
                    media_dir=str(media_dir.resolve()) if media_dir else None,
                    comments=comments,
                    cookies=str(Path(cookies).resolve()) if cookies else None,
                    detail=detail,
                )
                collect_in_parts(
                    collector,
                    settings,
                    rate=rate,
                    targets=targets,
                    urls=list(urls),
                    refresh_stats=refresh_stats,
                    workers=workers,
                    engine=engine,
                    ray_address=ray_address,
                )
        finally:
            collector.summary.wall_s = time.perf_counter() - started
            collector.summary.warnings = collector.summary.census.warnings(drift.history(store))
            args = {
                "targets": targets,
                "urls": len(urls),
                "limit": limit,
                "rate": rate,
                "media": str(media_dir),
                "detail": detail,
                "workers": workers,
            }
            store.record_run(
                f"collect-{run_started:%Y%m%dT%H%M%S%f}", run_started, args, collector.summary.as_dict()
            )
    if collector.summary.targets_failed:
        for label, reason in collector.summary.targets_failed.items():
            console.print(f"[yellow]target {label}[/]: {reason}")
    return collector.summary
