"""The collector's speed against its limits, measured in one run against `tkds twin` on loopback.

metadata     video pages/s of the detail stage (`--no-media`), next to yt-dlp's
             `extract_info(download=False)` run sequentially over the same pages; aim >= 5x
parse+upsert CPU ms per video for `parse_page` + `Store.upsert`; aim < 5 ms
media        MB/s of the media stage (yt-dlp + ffprobe + sha256), next to a plain concurrent httpx
             download of the same files; aim >= 0.8
peers        one hashtag through the same twin at the same --rate, without and with media, by tkds
             and by TikTok-Api 7.3.3 (unmodified; every request it makes waits for the same per-host
             limiter): videos/s and requests per video, counted in the twin's request log

  python benchmarks/collect.py [--videos 48] [--concurrency 8] [--tag-videos 300] [--rate 5] [--only-peers]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import ssl
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import yt_dlp
from TikTokApi import TikTokApi
from TikTokApi.stealth import stealth_async

from tkds.collector.collect import UPSERT_BATCH, collect
from tkds.collector.parse import parse_page
from tkds.collector.politeness import RateLimiter
from tkds.collector.records import Parsed
from tkds.collector.store import Store
from tkds.synth import generate
from tkds.tiktok import MONITOR_HOST, WEB_HOST
from tkds.twin import serve, spawn

REFERER = {"Referer": "https://www.tiktok.com/"}
CHROMIUM = "/usr/bin/chromium"


def request_kinds(requests: list[tuple[float, str, str]]) -> Counter:
    """The twin's log by what each request was for."""
    kinds: Counter = Counter()
    for _, host, path in requests:
        if path.startswith("/api/"):
            kinds["api"] += 1
        elif host == WEB_HOST:
            kinds["pages"] += 1
        elif host == MONITOR_HOST:
            kinds["beacons"] += 1
        else:
            kinds["media+images"] += 1
    return kinds


async def tiktokapi_hashtag(proxy_url: str, tag: str, count: int, rate: float, media: bool) -> int:
    """TikTok-Api reads `count` videos of #tag (and their bytes), every request waiting for the limiter.

    Its page's requests wait in a route on the page it gets from `page_factory`, TikTok-Api's own
    hook; `Video.bytes()` uses `requests` outside the browser, so the loop below waits for it."""
    limiter = RateLimiter(rate)

    async def throttle(route) -> None:
        await limiter.wait(urlsplit(route.request.url).hostname or "")
        await route.continue_()

    async def throttled_page(context):  # what TikTok-Api does without the hook, plus the route
        page = await context.new_page()
        await stealth_async(page)
        await page.route("**/*", throttle)
        await page.goto("https://www.tiktok.com")
        return page

    async with TikTokApi() as api:
        await api.create_sessions(
            num_sessions=1,
            executable_path=CHROMIUM,
            override_browser_args=["--headless=new", "--no-sandbox", "--disable-gpu"],
            proxies=[{"server": proxy_url}],
            context_options={"ignore_https_errors": True},
            page_factory=throttled_page,
        )
        videos = [video async for video in api.hashtag(name=tag).videos(count=count)]
        if not media:
            return len(videos)
        mp4s = 0
        for video in videos:
            await limiter.wait(urlsplit(video.as_dict["video"]["playAddr"]).hostname or "")
            mp4s += (await video.bytes())[4:8] == b"ftyp"
        return mp4s


@contextlib.contextmanager
def environment(**variables: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def peers(root: Path, videos: int, rate: float) -> list[str]:
    """tkds and TikTok-Api on the corpus's biggest hashtag, one after the other, each end to end."""
    corpus = root / "tag-corpus"
    generate(corpus, videos, seconds=(1.0, 1.0), progress=False)
    lines = []
    # In-process twin: its request log is what each client is charged with.
    with serve(corpus) as twin:
        tag = max(twin.state.corpus.by_tag, key=lambda name: len(twin.state.corpus.by_tag[name]))
        size = len(twin.state.corpus.by_tag[tag])

        def tkds(media: bool) -> int:
            summary = collect(
                root / f"tag-{media}.duckdb",
                hashtags=[tag],
                limit=size,
                media_dir=root / "tag-media" if media else None,
                rate=rate,
                proxies=[twin.proxy_url],
                ca_cert=twin.ca_path,
                progress=False,
            )
            return summary.media_ok if media else len(summary.collected)

        def tiktokapi(media: bool) -> int:
            # Video.info() and bytes() use `requests`, which finds the twin through these variables.
            with environment(HTTPS_PROXY=twin.proxy_url, REQUESTS_CA_BUNDLE=str(twin.ca_path)):
                return asyncio.run(tiktokapi_hashtag(twin.proxy_url, tag, size, rate, media))

        lines.append(f"peers: #{tag}, {size} videos, --rate {rate:g} a host, one twin in-process")
        for media in (False, True):
            for name, run in (("tkds", tkds), ("TikTok-Api", tiktokapi)):
                before, started = len(twin.state.requests), time.perf_counter()
                got = run(media)
                wall = time.perf_counter() - started
                kinds = request_kinds(list(twin.state.requests)[before:])
                spent = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items()))
                total = sum(kinds.values())
                lines.append(
                    f"  {name} {'with media' if media else 'metadata'}: {got} videos in {wall:.1f} s = "
                    f"{got / wall:.1f} videos/s; {total} requests ({spent}) = "
                    f"{total / got if got else float('nan'):.3f} a video"
                )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tag-videos", type=int, default=300, help="corpus size for the peers section")
    parser.add_argument("--rate", type=float, default=5.0, help="requests/s per host in the peers section")
    parser.add_argument("--only-peers", action="store_true", help="run the peers section alone")
    args = parser.parse_args()

    if args.only_peers:
        with tempfile.TemporaryDirectory() as tmp:
            print("\n".join(peers(Path(tmp), args.tag_videos, args.rate)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root / "corpus", args.videos, seconds=(10.0, 10.0), size=(288, 512), progress=False)
        items = [json.loads(p.read_text()) for p in sorted((root / "corpus" / "items").glob("*.json"))]
        urls = [f"https://www.tiktok.com/@{i['author']['uniqueId']}/video/{i['id']}" for i in items]
        ca = root / "ca.pem"
        with spawn(root / "corpus", ca) as proxy:
            common = {"urls": urls, "rate": 1000.0, "concurrency": args.concurrency, "proxies": [proxy]}
            meta = collect(root / "meta.duckdb", **common, ca_cert=ca, progress=False)
            ours_per_s = meta.details_ok / meta.stage_s["detail"]

            ydl = yt_dlp.YoutubeDL(
                {"proxy": proxy, "nocheckcertificate": True, "quiet": True, "no_warnings": True}
            )
            wall, cpu = time.perf_counter(), time.process_time()
            for url in urls:
                ydl.extract_info(url, download=False)
            ytdlp_s, ytdlp_cpu = time.perf_counter() - wall, time.process_time() - cpu

            trust = ssl.create_default_context(cafile=ca)
            with httpx.Client(proxy=proxy, verify=trust, timeout=60) as client:
                pages = [client.get(url).text for url in urls]
            with Store.open(root / "upsert.duckdb") as store:
                cpu = time.process_time()
                for start in range(0, len(pages), UPSERT_BATCH):  # batched as the detail stage does
                    batch = Parsed()
                    for page in pages[start : start + UPSERT_BATCH]:
                        batch.extend(parse_page(page))
                    store.upsert(batch.deduplicated(), source="bench")
                upsert_ms = (time.process_time() - cpu) * 1000 / len(pages)

            media = collect(
                root / "media.duckdb", **common, ca_cert=ca, media_dir=root / "media", progress=False
            )
            ours_mbs = media.media_bytes / 1e6 / media.stage_s["media"]

            clients = [httpx.Client(proxy=proxy, verify=trust, timeout=60) for _ in range(args.concurrency)]
            play = [[] for _ in clients]
            for index, url in enumerate(urls):  # each client visits its share of pages: cookies and URLs
                page = clients[index % len(clients)].get(url).text
                item = parse_page(page).videos[0]
                play[index % len(clients)].append(item.play_url)

            def fetch_all(index: int) -> int:
                return sum(len(clients[index].get(u, headers=REFERER).content) for u in play[index])

            started = time.perf_counter()
            with ThreadPoolExecutor(len(clients)) as pool:
                plain_bytes = sum(pool.map(fetch_all, range(len(clients))))
            plain_mbs = plain_bytes / 1e6 / (time.perf_counter() - started)
        peer_lines = peers(root, args.tag_videos, args.rate)

    n = len(urls)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    size = media.media_bytes / n / 1e6
    print(f"videos: {n} x 288x512, 10 s ({size:.2f} MB each); concurrency {args.concurrency}")
    ratio = ours_per_s / (n / ytdlp_s)
    print(f"metadata: {ours_per_s:.1f} video pages/s vs yt-dlp {n / ytdlp_s:.1f}/s sequential "
          f"({ytdlp_s / n * 1000:.0f} ms wall, {ytdlp_cpu / n * 1000:.0f} ms CPU a video): {ratio:.1f}x "
          f"(aim >= 5x: {'met' if ratio >= 5 else 'NOT met'})")  # fmt: skip
    verdict = "met" if upsert_ms < 5 else "NOT met"
    print(f"parse + upsert: {upsert_ms:.2f} CPU ms a video (aim < 5 ms: {verdict})")
    media_ratio = ours_mbs / plain_mbs
    print(f"media: {ours_mbs:.1f} MB/s vs plain httpx {plain_mbs:.1f} MB/s: {media_ratio:.2f} "
          f"(aim >= 0.8: {'met' if media_ratio >= 0.8 else 'NOT met'})")  # fmt: skip
    print("\n".join(peer_lines))


if __name__ == "__main__":
    main()
