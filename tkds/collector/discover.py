"""Discovery and comments: item lists and comment lists, called from inside a target's page in Chromium."""

from __future__ import annotations

import json

from tkds.collector.browser import BrowserError, BrowserSession, Listing
from tkds.collector.detail import complete_items
from tkds.collector.outcome import MAX_ATTEMPTS, STATUS_REASONS, CollectSummary, TargetFailed, pause
from tkds.collector.parse import CaptureError, parse_api
from tkds.collector.politeness import CircuitBreaker
from tkds.collector.records import Parsed
from tkds.collector.sources import SOURCES
from tkds.collector.store import Store
from tkds.tiktok import STATUS_OK

LISTING_BATCH = 240  # listed videos per transaction: 30 a page cost ~1.7 ms CPU a video in DuckDB, 240 ~0.5


class ListingBatch:
    """Listing pages fetched for one target and not yet stored, and what the store already holds."""

    def __init__(self, kind: str, key: str, discovered: int) -> None:
        self.kind, self.key = kind, key
        self.discovered = discovered  # videos stored with this target as their source
        self.pages: list[tuple[Parsed, set[str]]] = []  # each page, with the videos whose page is skipped
        self.videos = 0  # videos in `pages`, not yet stored
        self.cursor: str | None = None
        self.has_more: bool | None = None

    def add(self, listed: Parsed, skipped: set[str], cursor: str, has_more: bool) -> None:
        self.pages.append((listed, skipped))
        self.videos += len(listed.videos)
        self.cursor, self.has_more = cursor, has_more


class Discovery:
    """The collector's listing stages (a mixin of `Collector`, which sets these attributes)."""

    store: Store
    summary: CollectSummary
    breaker: CircuitBreaker
    limit: int
    comments: int
    detail_mode: str  # "auto", "always" or "never"
    page_required: set[str]  # --urls videos: their page is fetched whatever the listing holds

    # --- discovery
    async def discover(self, browser: BrowserSession, kind: str, key: str, given_up: dict) -> None:
        source = SOURCES[kind]
        label = f"{kind}:{key}"
        state = self.store.target(kind, key)
        if state["status"] == "done":
            return
        if (kind, key) in given_up:
            self.summary.targets_failed[label] = f"{given_up[kind, key]} (not retried)"
            return
        self.store.update_target(kind, key, status="running", attempted=True)
        try:
            await self._discover(browser, source, kind, key, state)
        except TargetFailed as failed:
            self.fail_target(kind, key, failed.reason)

    async def _discover(self, browser: BrowserSession, source, kind: str, key: str, state: dict) -> None:
        label = f"{kind}:{key}"
        listing = await self.open_listing(browser, source.page_url(key), source.api_path)
        if listing.page_status:
            raise TargetFailed(STATUS_REASONS.get(listing.page_status, f"status {listing.page_status}"))
        cursor, has_more = state["cursor"], state["has_more"]
        resumed = cursor is not None
        captured = [] if resumed else [body for status, body in listing.responses if status == 200 and body]
        if not resumed:
            cursor, has_more = "0", True
        batch = ListingBatch(kind, key, self.store.discovered(label))
        try:
            while has_more:
                if batch.discovered + batch.videos >= self.limit:
                    self.flush_listings(batch)  # what is stored says whether the limit is met
                    if batch.discovered >= self.limit:
                        break
                parsed = _first_parsable(captured)
                if parsed is None:
                    parsed = await self.fetch_listing(
                        browser, source.api_path, {**listing.params, "cursor": cursor}
                    )
                if parsed.status != STATUS_OK:
                    raise TargetFailed(STATUS_REASONS.get(parsed.status, f"status {parsed.status}"))
                if batch.discovered + batch.videos + len(parsed.videos) > self.limit:
                    self.flush_listings(batch)  # then the room left is exact
                room = self.limit - batch.discovered - batch.videos  # at least 1
                keep = {v.id for v in parsed.videos[:room]}
                listed = _only(parsed, keep)
                self.summary.census.add(listed, "item lists")
                cursor, has_more = parsed.cursor or cursor, bool(parsed.has_more)
                batch.add(listed, self.skipped_pages(parsed, keep), cursor, has_more)
                if batch.videos >= LISTING_BATCH or not parsed.videos:
                    self.flush_listings(batch)
                if not parsed.videos:
                    break
        finally:  # pages already listed are stored whatever stopped the loop (the disk is full: again)
            self.flush_listings(batch)
        if batch.discovered == 0:
            raise TargetFailed("no videos: an unknown or empty target")
        self.store.update_target(kind, key, status="done")
        self.summary.targets_done += 1

    def skipped_pages(self, listed: Parsed, keep: set[str]) -> set[str]:
        """The listed videos whose page `--detail` does not fetch: in "auto" those whose item is
        complete, in "never" all of them; a --urls video's page is fetched in every mode."""
        if self.detail_mode == "always":
            return set()
        enough = complete_items(listed) & keep if self.detail_mode == "auto" else keep
        return enough - self.page_required

    def flush_listings(self, batch: ListingBatch) -> None:
        """Store a batch of listing pages, their video targets and the target's cursor after them, in
        one transaction: a killed run re-lists the pages of its last batch, and only those."""
        pages, batch.pages = batch.pages, []
        if not pages:
            return
        listed, pending, complete = Parsed(), [], []
        for parsed, skipped in pages:
            listed.extend(parsed)
            complete += sorted(skipped)
            pending += [v.id for v in parsed.videos if v.id not in skipped]
        batch.videos = 0
        listed = listed.deduplicated()
        with self.store.transaction():
            counts = self.store.upsert(listed, source=f"{batch.kind}:{batch.key}")
            self.summary.details_skipped += self.store.add_listed_videos(pending, complete)
            self.store.update_target(
                batch.kind, batch.key, status="running", cursor=batch.cursor, has_more=batch.has_more
            )
        self.summary.add(counts)
        self.summary.collected.update(v.id for v in listed.videos)
        batch.discovered += counts["new"]

    def fail_target(self, kind: str, key: str, reason: str) -> None:
        self.store.update_target(kind, key, status="failed", error=reason)
        self.summary.targets_failed[f"{kind}:{key}"] = reason

    async def open_listing(self, browser: BrowserSession, url: str, api_path: str) -> Listing:
        """A target's page, opened once it answers with content and its item-list call (or a status)."""
        reason = "unknown"
        for attempt in range(MAX_ATTEMPTS):
            try:
                listing = await browser.open(url, api_path)
            except BrowserError as error:
                reason = error.reason
                if reason == "empty":
                    await self.breaker.failure("empty bodies")
                await pause(attempt, error.retry_after)
                continue
            if listing.page_status or listing.params is not None:
                self.breaker.success()
                return listing
            reason = "no item list (the page made no API call)"
            await pause(attempt)
        raise TargetFailed(f"page: {reason}")

    async def fetch_listing(self, browser: BrowserSession, path: str, params: dict) -> Parsed:
        """One signed item-list call from inside the page, retried through TikTok's soft failures."""
        reason = "unknown"
        for attempt in range(MAX_ATTEMPTS):
            retry_after = None
            try:
                status, body, retry_after = await browser.signed_fetch(path, {**params, "count": "30"})
            except BrowserError as error:
                reason = error.reason
            else:
                if status == 200 and body:
                    parsed = _parse_api_body(body)
                    if parsed is not None:
                        self.breaker.success()
                        return parsed
                    reason = "malformed"
                elif status == 200:
                    reason = "empty"
                    await self.breaker.failure("empty bodies")
                else:
                    reason = f"http {status}" if status else "connection"
            await pause(attempt, retry_after)
        raise TargetFailed(f"item list: {reason}")

    # --- comments
    async def fetch_comments(self, browser: BrowserSession, video_id: str) -> None:
        cursor, fetched = "0", 0
        while fetched < self.comments:
            try:
                parsed = await self.fetch_listing(
                    browser, "/api/comment/list/", {"aweme_id": video_id, "cursor": cursor}
                )
            except TargetFailed:
                return  # the comments the next run finds will do
            parsed.comments = parsed.comments[: self.comments - fetched]
            self.store.upsert(parsed, source=f"comments:{video_id}")
            fetched += len(parsed.comments)
            self.summary.comments += len(parsed.comments)
            if not parsed.has_more or not parsed.comments:
                return
            cursor = parsed.cursor or str(fetched)


def _parse_api_body(body: str) -> Parsed | None:
    """An item-list or comment-list body, or None when it is not TikTok's JSON."""
    try:
        return parse_api(json.loads(body))
    except (ValueError, CaptureError, RecursionError):
        return None


def _first_parsable(bodies: list[str]) -> Parsed | None:
    """Pop the item-list bodies the page fetched itself until one parses."""
    while bodies:
        parsed = _parse_api_body(bodies.pop(0))
        if parsed is not None:
            return parsed
    return None


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
        shape=parsed.shape,
    )
