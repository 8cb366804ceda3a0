"""`tkds collect`: discover (Chromium) → detail (httpx page JSON) → media (yt-dlp) → DuckDB.

Every stage reads its work from `crawl_targets` and writes its results before it marks them done, so
Ctrl-C or kill -9 at any moment, then the same command, ends with the same videos and media.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import itertools
import json
import ssl
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tkds.collector.browser import BrowserSession
from tkds.collector.media import download, sweep_partials
from tkds.collector.parse import CaptureError, parse_api, parse_page
from tkds.collector.politeness import CircuitBreaker, RateLimiter, backoff_s
from tkds.collector.records import Parsed
from tkds.collector.sources import SOURCES, parse_video_url
from tkds.collector.store import Store, utcnow
from tkds.console import console, progress_bar
from tkds.errors import TkdsError
from tkds.tiktok import (
    STATUS_OK,
    STATUS_PRIVATE_ACCOUNT,
    STATUS_PRIVATE_ITEM,
    STATUS_UNAVAILABLE,
    STATUS_USER_NOT_FOUND,
    WEB_HOST,
    video_page_url,
)

MAX_ATTEMPTS = 5
UPSERT_BATCH = 64  # video pages per transaction: one page per upsert costs ~30 ms of DuckDB, 64 ~1 ms each
MEDIA_ATTEMPTS = 3  # per run, with backoff
MEDIA_GIVE_UP_AFTER = 9  # failed tries over all runs, after which a video's media is left alone
STATUS_REASONS = {
    STATUS_UNAVAILABLE: "unavailable",
    STATUS_PRIVATE_ITEM: "private",
    STATUS_PRIVATE_ACCOUNT: "private_account",
    STATUS_USER_NOT_FOUND: "user_not_found",
}
FINAL_STATUSES = {STATUS_PRIVATE_ITEM, STATUS_PRIVATE_ACCOUNT, STATUS_USER_NOT_FOUND}


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
    wall_s: float = 0.0
    stage_s: dict[str, float] = field(default_factory=dict)  # discover, detail, comments, media

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
            "wall_s": round(self.wall_s, 3),
            "stage_s": {k: round(v, 3) for k, v in self.stage_s.items()},
        }


def read_proxies(values: list[str]) -> list[str]:
    """`--proxy` values: URLs, or files with one URL a line."""
    proxies = []
    for value in values:
        path = Path(value)
        if "://" not in value and path.is_file():
            proxies += [line.strip() for line in path.read_text().splitlines() if line.strip()]
        else:
            proxies.append(value)
    return proxies


def read_cookies(path: Path) -> list[dict]:
    """A Netscape cookies.txt as Playwright cookies."""
    jar = http.cookiejar.MozillaCookieJar()
    try:
        jar.load(str(path), ignore_discard=True, ignore_expires=True)
    except (OSError, http.cookiejar.LoadError) as error:
        raise TkdsError(f"cannot read --cookies {path} ({error}); export them in Netscape format") from None
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


def write_cookie_file(cookies: list[dict], path: Path) -> None:
    lines = ["# Netscape HTTP Cookie File"]
    for c in cookies:
        domain = c["domain"]
        prefix = "#HttpOnly_" if c.get("httpOnly") else ""
        expires = int(c.get("expires") or 0) if (c.get("expires") or 0) > 0 else 0
        flag = "TRUE" if domain.startswith(".") else "FALSE"
        secure = "TRUE" if c.get("secure") else "FALSE"
        lines.append(f"{prefix}{domain}\t{flag}\t{c['path']}\t{secure}\t{expires}\t{c['name']}\t{c['value']}")
    path.write_text("\n".join(lines) + "\n")


class Collector:
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
    ) -> None:
        self.store, self.limit, self.concurrency, self.cookies = store, limit, concurrency, cookies
        self.proxies = proxies or [None]
        self.ca_cert, self.media_dir, self.comments, self.progress = ca_cert, media_dir, comments, progress
        self.limiter = RateLimiter(rate)
        self.breaker = CircuitBreaker()
        self.summary = CollectSummary()
        self._proxy_cycle = itertools.cycle(self.proxies)
        self.pending: list[tuple[str, Parsed]] = []  # fetched video pages not yet in the store

    def flush(self) -> None:
        """Upsert the buffered video pages in one transaction, then mark them done."""
        if not self.pending:
            return
        merged = Parsed()
        for _, parsed in self.pending:
            merged.extend(parsed)
        self.summary.add(self.store.upsert(merged.deduplicated(), source="video-page"))
        self.store.mark_done("video", [video_id for video_id, _ in self.pending])
        self.pending.clear()

    def next_proxy(self) -> str | None:
        return next(self._proxy_cycle)

    # --- discovery
    async def discover(self, browser: BrowserSession, kind: str, key: str) -> None:
        source = SOURCES[kind]
        label = f"{kind}:{key}"
        state = self.store.target(kind, key)
        if state["status"] == "done":
            return
        self.store.update_target(kind, key, status="running", attempted=True)
        listing = await browser.open(source.page_url(key), source.api_path)
        if listing.page_status or listing.params is None:
            reason = STATUS_REASONS.get(listing.page_status, "no item list (the page made no API call)")
            self.fail_target(kind, key, reason)
            return
        cursor, has_more = state["cursor"], state["has_more"]
        resumed = cursor is not None
        captured = [] if resumed else [body for status, body in listing.responses if status == 200 and body]
        if not resumed:
            cursor, has_more = "0", True
        while has_more and self.store.discovered(label) < self.limit:
            if captured:
                body = captured.pop(0)
            else:
                body = await self.fetch_listing(
                    browser, source.api_path, {**listing.params, "cursor": cursor}
                )
                if body is None:
                    self.fail_target(kind, key, "item list kept failing")
                    return
            parsed = parse_api(json.loads(body))
            if parsed.status != STATUS_OK:
                self.fail_target(kind, key, STATUS_REASONS.get(parsed.status, f"status {parsed.status}"))
                return
            room = self.limit - self.store.discovered(label)
            keep = {v.id for v in parsed.videos[:room]}
            self.summary.add(self.store.upsert(_only(parsed, keep), source=label))
            self.store.add_targets([("video", video_id) for video_id in sorted(keep)])
            cursor, has_more = parsed.cursor or cursor, bool(parsed.has_more)
            self.store.update_target(kind, key, status="running", cursor=cursor, has_more=has_more)
            if not parsed.videos:
                break
        if self.store.discovered(label) == 0:
            self.fail_target(kind, key, "no videos: an unknown or empty target")
            return
        self.store.update_target(kind, key, status="done")
        self.summary.targets_done += 1

    def fail_target(self, kind: str, key: str, reason: str) -> None:
        self.store.update_target(kind, key, status="failed", error=reason)
        self.summary.targets_failed[f"{kind}:{key}"] = reason

    async def fetch_listing(self, browser: BrowserSession, path: str, params: dict) -> str | None:
        """One signed item-list call from inside the page, retried through TikTok's soft failures."""
        for attempt in range(MAX_ATTEMPTS):
            status, body, retry_after = await browser.signed_fetch(path, {**params, "count": "30"})
            if status == 200 and body:
                self.breaker.success()
                return body
            if status == 200:
                await self.breaker.failure("empty bodies")
            await asyncio.sleep(backoff_s(attempt, retry_after))
        return None

    # --- detail
    async def detail(
        self, client: httpx.AsyncClient, browser: BrowserSession, video_id: str, user: str
    ) -> None:
        url = video_page_url(user, video_id)
        reason = "unknown"
        for attempt in range(MAX_ATTEMPTS):
            await self.limiter.wait(WEB_HOST)
            try:
                response = await client.get(url)
            except httpx.TransportError as error:
                reason = f"connection: {type(error).__name__}"
                await asyncio.sleep(backoff_s(attempt))
                continue
            if response.status_code == 429 or response.status_code >= 500:
                reason = f"http {response.status_code}"
                await asyncio.sleep(backoff_s(attempt, response.headers.get("retry-after")))
                continue
            if response.url.path == "/login":
                reason = "login_required"
                break
            try:
                parsed = parse_page(response.text)
            except CaptureError as error:
                reason = error.kind
                if error.kind == "challenge":
                    await browser.goto(url)  # the page's script solves it; its cookie then serves httpx too
                    _share_cookies(await browser.cookies(), client)
                elif error.kind == "empty":
                    await self.breaker.failure("empty bodies")
                    await asyncio.sleep(backoff_s(attempt))
                continue
            if parsed.status != STATUS_OK:
                reason = STATUS_REASONS.get(parsed.status, f"status {parsed.status}")
                if parsed.status in FINAL_STATUSES:
                    break
                await self.breaker.failure("blocked")
                await asyncio.sleep(backoff_s(attempt))
                continue
            self.breaker.success()
            self.pending.append((video_id, parsed))
            if len(self.pending) >= UPSERT_BATCH:
                self.flush()
            self.summary.details_ok += 1
            return
        self.store.update_target("video", video_id, status="failed", error=reason, attempted=True)
        self.summary.detail_failures[reason] += 1

    # --- comments
    async def fetch_comments(self, browser: BrowserSession, video_id: str) -> None:
        cursor, fetched = "0", 0
        while fetched < self.comments:
            body = await self.fetch_listing(
                browser, "/api/comment/list/", {"aweme_id": video_id, "cursor": cursor}
            )
            if body is None:
                return
            parsed = parse_api(json.loads(body))
            parsed.comments = parsed.comments[: self.comments - fetched]
            self.store.upsert(parsed, source=f"comments:{video_id}")
            fetched += len(parsed.comments)
            self.summary.comments += len(parsed.comments)
            if not parsed.has_more or not parsed.comments:
                return
            cursor = parsed.cursor or str(fetched)

    # --- the run
    async def run(self, targets: list[tuple[str, str]], urls: list[str], refresh_stats: bool) -> None:
        self.store.add_targets(targets + [("video", parse_video_url(url)[1]) for url in urls])
        async with BrowserSession(
            self.proxies[0], self.ca_cert is not None, self.limiter, self.cookies
        ) as browser:
            with (
                self.stage("discover"),
                progress_bar("collect: discover", len(targets), self.progress) as bar,
            ):
                for kind, key in targets:
                    await self.discover(browser, kind, key)
                    bar.advance(0)

            url_users = dict(reversed(parse_video_url(u)) for u in urls)
            work = [
                (video_id, url_users.get(video_id, user)) for video_id, user in self.store.pending_videos()
            ]
            if refresh_stats:
                work += [(v, u) for v, u in self.store.known_videos() if v not in {w[0] for w in work}]
            with self.stage("detail"), progress_bar("collect: detail", len(work), self.progress) as bar:
                await self.fetch_details(browser, work, bar)

            if self.comments:
                with self.stage("comments"):
                    for video_id, _ in self.store.known_videos():
                        await self.fetch_comments(browser, video_id)

            if self.media_dir is not None:
                with self.stage("media"):
                    await self.download_all(await browser.cookies())

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.summary.stage_s[name] = self.summary.stage_s.get(name, 0.0) + time.perf_counter() - started

    async def fetch_details(self, browser: BrowserSession, work: list[tuple[str, str]], bar) -> None:
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=self.ca_cert) if self.ca_cert else True
        )
        clients = [httpx.AsyncClient(http2=True, proxy=p, verify=verify, timeout=30) for p in self.proxies]
        cookies = await browser.cookies()
        for client in clients:
            _share_cookies(cookies, client)
        pool = itertools.cycle(clients)
        gate = asyncio.Semaphore(self.concurrency)

        async def one(video_id: str, user: str) -> None:
            async with gate:
                await self.detail(next(pool), browser, video_id, user)
            bar.advance(0)

        try:
            await asyncio.gather(*(one(v, u) for v, u in work))
        finally:
            self.flush()
            for client in clients:
                await client.aclose()

    async def download_all(self, cookies: list[dict]) -> None:
        sweep_partials(self.media_dir)
        try:
            await self._download(self.store.videos_needing_media(MEDIA_GIVE_UP_AFTER), cookies)
        finally:
            sweep_partials(self.media_dir)  # what failed or interrupted downloads left behind

    async def _download(self, todo: list[tuple[str, str]], cookies: list[dict]) -> None:
        with tempfile.TemporaryDirectory(prefix="tkds-cookies-") as folder:
            cookie_file = Path(folder) / "cookies.txt"
            write_cookie_file(cookies, cookie_file)
            gate = asyncio.Semaphore(self.concurrency)
            full: list[str] = []  # the video whose write found the disk full: no more downloads start

            async def one(video_id: str, user: str, bar) -> None:
                async with gate:
                    for attempt in range(MEDIA_ATTEMPTS):
                        if full:
                            return
                        if attempt:
                            await asyncio.sleep(backoff_s(attempt))
                        result = await asyncio.to_thread(
                            download,
                            video_id,
                            user,
                            self.media_dir,
                            proxy=self.next_proxy(),
                            trust_proxy_ca=self.ca_cert is not None,
                            cookie_file=cookie_file,
                            limiter=self.limiter,
                        )
                        self.store.record_media(result)
                        if result.error == "disk_full":
                            full.append(video_id)
                            return
                        if result.status == "ok":
                            self.summary.media_ok += 1
                            self.summary.media_bytes += result.bytes or 0
                            break
                    else:
                        self.summary.media_failures[(result.error or "error").split(":")[0]] += 1
                bar.advance(0)

            with progress_bar("collect: media", len(todo), enabled=self.progress) as bar:
                await asyncio.gather(*(one(v, u, bar) for v, u in todo))
            if full:
                raise TkdsError(
                    f"the disk under {self.media_dir} is full (video {full[0]}); "
                    "free some space, then re-run the same command to resume"
                )


def _only(parsed: Parsed, keep: set[str]) -> Parsed:
    """The part of a listing page within the target's --limit."""
    videos = [v for v in parsed.videos if v.id in keep]
    authors = {v.author_id for v in videos}
    return Parsed(
        videos=videos,
        video_stats=[s for s in parsed.video_stats if s.video_id in keep],
        authors=[a for a in parsed.authors if a.id in authors],
        author_stats=[s for s in parsed.author_stats if s.author_id in authors],
        music=[m for m in parsed.music if m.id in {v.music_id for v in videos}],
    )


def _share_cookies(cookies: list[dict], client: httpx.AsyncClient) -> None:
    for c in cookies:
        client.cookies.set(c["name"], c["value"], domain=c["domain"], path=c.get("path", "/"))


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
) -> CollectSummary:
    """Collect the named targets into the DuckDB file `db` (and their mp4s into `media_dir`)."""
    targets = (
        [("hashtag", h.lstrip("#").lower()) for h in hashtags]
        + [("user", u.lstrip("@")) for u in users]
        + [("music", m) for m in music]
        + [("search", q) for q in searches]
        + ([("trending", "foryou")] if trending else [])
    )
    if not targets and not urls and not refresh_stats:
        raise TkdsError(
            "name at least one target: --hashtag, --user, --music, --search, --trending or --urls"
        )
    if limit < 1:
        raise TkdsError(f"--limit must be at least 1 (got {limit})")
    if ca_cert is not None and not Path(ca_cert).is_file():
        raise TkdsError(f"--ca-cert {ca_cert} does not exist; the twin writes it with --ca-out")
    started, run_started = time.perf_counter(), utcnow()
    with Store.open(db) as store:
        collector = Collector(
            store,
            limit=limit,
            rate=rate,
            concurrency=concurrency,
            proxies=read_proxies(list(proxies)),
            ca_cert=Path(ca_cert) if ca_cert else None,
            media_dir=Path(media_dir) if media_dir is not None else None,
            comments=comments,
            cookies=read_cookies(Path(cookies)) if cookies else None,
            progress=progress,
        )
        try:
            asyncio.run(collector.run(targets, list(urls), refresh_stats))
        finally:
            collector.summary.wall_s = time.perf_counter() - started
            args = {
                "targets": targets,
                "urls": len(urls),
                "limit": limit,
                "rate": rate,
                "media": str(media_dir),
            }
            store.record_run(
                f"collect-{run_started:%Y%m%dT%H%M%S%f}", run_started, args, collector.summary.as_dict()
            )
    if collector.summary.targets_failed:
        for label, reason in collector.summary.targets_failed.items():
            console.print(f"[yellow]target {label}[/]: {reason}")
    return collector.summary
