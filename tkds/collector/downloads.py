"""Media: every fetched video's mp4 through yt-dlp in worker threads, recorded as it lands."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

from tkds.collector.media import cookie_file, download, sweep_partials
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
    media_dir: Path | None
    ca_cert: Path | None
    progress: bool
    _proxy_cycle: Iterator[str | None]

    def next_proxy(self) -> str | None:
        return next(self._proxy_cycle)

    async def download_all(self, cookies: list[dict]) -> None:
        try:
            with cookie_file(cookies, self.media_dir) as cookies_txt:
                await self._download(self.store.videos_needing_media(MEDIA_GIVE_UP_AFTER), cookies_txt)
        finally:
            sweep_partials(self.media_dir)  # what failed or interrupted downloads left behind

    async def _download(self, todo: list[tuple[str, str]], cookies_txt: Path) -> None:
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
                        cookie_file=cookies_txt,
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
