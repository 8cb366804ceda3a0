"""The collector's speed against its limits, measured in one run against `tkds twin` on loopback.

metadata     video pages/s of the detail stage (`--no-media`), next to yt-dlp's
             `extract_info(download=False)` run sequentially over the same pages; aim >= 5x
parse+upsert CPU ms per video for `parse_page` + `Store.upsert`; aim < 5 ms
media        MB/s of the media stage (yt-dlp + ffprobe + sha256), next to a plain concurrent httpx
             download of the same files; aim >= 0.8

  python benchmarks/collect.py [--videos 48] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import ssl
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import yt_dlp

from tkds.collector.collect import UPSERT_BATCH, collect
from tkds.collector.parse import parse_page
from tkds.collector.records import Parsed
from tkds.collector.store import Store
from tkds.synth import generate
from tkds.twin import spawn

REFERER = {"Referer": "https://www.tiktok.com/"}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

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


if __name__ == "__main__":
    main()
