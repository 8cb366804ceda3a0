"""Media: every fetched video's mp4 from the play URL the store holds, in worker threads, recorded as
it lands; yt-dlp's extractor only for a URL that TikTok refuses (expired, or not this session's).
A photo post's images and sound come straight from the URLs of its latest item (yt-dlp has no
extractor for them), recorded with its images in `media_images`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx

from tkds.collector.media import (
    MediaResult,
    PhotoUrls,
    Refused,
    cookie_file,
    download,
    download_direct,
    download_photo,
    fresh_photo_urls,
    media_client,
    photo_urls,
    sweep_partials,
)
from tkds.collector.outcome import CollectSummary
from tkds.collector.politeness import RateLimiter, backoff_s
from tkds.collector.store import Store
from tkds.console import progress_bar
from tkds.errors import TkdsError

MEDIA_ATTEMPTS = 3  # per run, with backoff
MEDIA_GIVE_UP_AFTER = 9  # failed tries over all runs, after which a video's media is left alone


class Downloads:
    """The collector's media stage (a mixin of `Collector`, which sets these attributes)."""

    store: Store
    summary: CollectSummary
    limiter: RateLimiter
    concurrency: int
    proxies: list[str | None]
    media_dir: Path | None
    ca_cert: Path | None
    progress: bool
    _proxy_cycle: Iterator[str | None]

    def next_proxy(self) -> str | None:
        return next(self._proxy_cycle)

    async def download_all(self, cookies: list[dict]) -> None:
        try:
            with ExitStack() as stack:
                cookies_txt = stack.enter_context(cookie_file(cookies, self.media_dir))
                clients = {
                    proxy: stack.enter_context(
                        media_client(cookies, proxy, self.ca_cert, self.summary.requests)
                    )
                    for proxy in self.proxies
                }
                await self._download(
                    self.store.videos_needing_media(MEDIA_GIVE_UP_AFTER), cookies_txt, clients
                )
        finally:
            sweep_partials(self.media_dir)  # what failed or interrupted downloads left behind

    def _fetch(
        self,
        video_id: str,
        user: str,
        play_url: str | None,
        proxy: str | None,
        cookies_txt: Path,
        clients: dict[str | None, httpx.Client],
    ) -> tuple[MediaResult, bool]:
        """One download (blocking): the held play URL first, yt-dlp's extractor if there is none or
        TikTok refuses it. Returns the result, and whether yt-dlp's extractor made it."""
        if play_url is not None:
            try:
                result = download_direct(
                    video_id, play_url, self.media_dir, client=clients[proxy], limiter=self.limiter
                )
                return result, False
            except Refused:
                pass
        result = download(
            video_id,
            user,
            self.media_dir,
            proxy=proxy,
            trust_proxy_ca=self.ca_cert is not None,
            cookie_file=cookies_txt,
            limiter=self.limiter,
            requests=self.summary.requests,
        )
        return result, True

    def _fetch_photo(
        self, video_id: str, user: str, urls: PhotoUrls, client: httpx.Client
    ) -> tuple[MediaResult, PhotoUrls | None]:
        """One photo post's images and sound (blocking), straight from its item's URLs. URLs the CDN
        refuses (expired) are replaced by those of the post's page, fetched again once: returns the
        result and those fresh URLs, or None when the held ones were used."""
        result = download_photo(video_id, *urls, self.media_dir, client=client, limiter=self.limiter)
        if not (result.error or "").startswith("forbidden"):
            return result, None
        fresh = fresh_photo_urls(client, user, video_id, self.limiter)
        if fresh is None:
            return result, None
        return download_photo(video_id, *fresh, self.media_dir, client=client, limiter=self.limiter), fresh

    async def _download(
        self, todo: list[tuple[str, str]], cookies_txt: Path, clients: dict[str | None, httpx.Client]
    ) -> None:
        gate = asyncio.Semaphore(self.concurrency)
        full: list[str] = []  # the video whose write found the disk full: no more downloads start
        play_urls = self.store.play_urls([video_id for video_id, _ in todo])
        photos = {
            video_id: photo_urls(*sources)
            for video_id, sources in self.store.photo_sources([video_id for video_id, _ in todo]).items()
        }

        async def one(video_id: str, user: str, bar) -> None:
            async with gate:
                for attempt in range(MEDIA_ATTEMPTS):
                    if full:
                        return
                    if attempt:
                        await asyncio.sleep(backoff_s(attempt))
                    if video_id in photos:
                        result, fresh = await asyncio.to_thread(
                            self._fetch_photo, video_id, user, photos[video_id], clients[self.next_proxy()]
                        )
                        if fresh is not None:  # the page's URLs serve the next try too
                            photos[video_id] = fresh
                            self.summary.photo_refetches += 1
                        self.store.record_photo_media(result)
                    else:
                        result, fell_back = await asyncio.to_thread(
                            self._fetch,
                            video_id,
                            user,
                            play_urls.get(video_id),
                            self.next_proxy(),
                            cookies_txt,
                            clients,
                        )
                        if fell_back:  # a refused URL would be refused again: the next try is yt-dlp's too
                            play_urls.pop(video_id, None)
                            self.summary.media_fallbacks += 1
                        self.store.record_media(result)
                    if result.error == "disk_full":
                        full.append(video_id)
                        return
                    if result.status == "ok":
                        self.summary.media_ok += 1
                        self.summary.media_bytes += result.bytes or 0
                        if result.images:
                            self.summary.photo_posts_ok += 1
                            self.summary.photo_images += len(result.images)
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
