"""The twin's speed against its limit: a plain static file server on the same files, same run.

Prints:
  startup      seconds to index and start on a 10,000-video corpus (aim: under 2 s)
  pages/s      video pages through the proxy (TLS, cookies, embedded JSON), with concurrency
  media MB/s   mp4 bytes through the proxy, next to `python -m http.server` serving the same
               files over plain HTTP, with the same clients; ratio aim >= 0.5. Each server is
               its own process, as in use.

    python benchmarks/twin.py [--seconds 5] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tkds.synth import generate
from tkds.twin import serve, spawn

REFERER = {"Referer": "https://www.tiktok.com/"}


def clone_corpus(source: Path, target: Path, videos: int) -> None:
    """A large corpus from a small one: item JSON under new ids, media hard-linked."""
    items = [json.loads(p.read_text()) for p in sorted((source / "items").glob("*.json"))]
    (target / "items").mkdir(parents=True)
    (target / "media").mkdir()
    for n in range(videos):
        item = dict(items[n % len(items)])
        new_id = str((item["createTime"] << 32) | n)
        source_media = source / "media" / f"{item['id']}.mp4"
        item["id"] = new_id
        (target / "items" / f"{new_id}.json").write_text(json.dumps(item))
        os.link(source_media, target / "media" / f"{new_id}.mp4")


def embedded_item(html: str) -> dict:
    data = re.search(r'id="__UNIVERSAL_DATA_FOR_REHYDRATION__"[^>]*>(.*?)</script>', html, re.S).group(1)
    return json.loads(data)["__DEFAULT_SCOPE__"]["webapp.video-detail"]["itemInfo"]["itemStruct"]


def hammer(fetch, seconds: float, concurrency: int) -> tuple[int, int, float]:
    """Run `fetch(worker)` in `concurrency` threads for `seconds`; returns (requests, bytes, elapsed)."""
    deadline = time.perf_counter() + seconds

    def worker(index: int) -> tuple[int, int]:
        count = size = 0
        while time.perf_counter() < deadline:
            size += fetch(index)
            count += 1
        return count, size

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(worker, range(concurrency)))
    elapsed = time.perf_counter() - started
    return sum(r[0] for r in results), sum(r[1] for r in results), elapsed


def measure_twin(
    proxy: str, ca: Path, corpus: Path, args: argparse.Namespace
) -> tuple[int, float, int, float]:
    """Video pages and media through the twin's proxy: (pages, seconds, media bytes, seconds)."""
    trust = ssl.create_default_context(cafile=ca)
    clients = [httpx.Client(proxy=proxy, verify=trust, timeout=60) for _ in range(args.concurrency)]
    pages_urls, play = [], {}
    for item_file in sorted((corpus / "items").glob("*.json")):
        item = json.loads(item_file.read_text())
        pages_urls.append(f"https://www.tiktok.com/@{item['author']['uniqueId']}/video/{item['id']}")
    for c in clients:  # a page visit gives each client its cookies, and the item its media URL
        play[c] = [embedded_item(c.get(url).text)["video"]["playAddr"] for url in pages_urls]

    def page(index: int) -> int:
        return len(clients[index].get(pages_urls[int(time.perf_counter() * 1000) % len(pages_urls)]).content)

    def media(index: int) -> int:
        urls = play[clients[index]]
        return len(
            clients[index].get(urls[int(time.perf_counter() * 1000) % len(urls)], headers=REFERER).content
        )

    pages, _, pages_s = hammer(page, args.seconds, args.concurrency)
    _, twin_bytes, twin_s = hammer(media, args.seconds, args.concurrency)
    for c in clients:
        c.close()

    return pages, pages_s, twin_bytes, twin_s


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root / "small", 24, seconds=(10.0, 10.0), size=(288, 512), progress=False)
        clone_corpus(root / "small", root / "large", 10_000)

        started = time.perf_counter()
        with serve(root / "large"):
            startup_s = time.perf_counter() - started

        # Both servers run as their own processes, as `tkds twin` and a static server would.
        ca = root / "ca.pem"
        with spawn(root / "small", ca) as proxy:
            pages, pages_s, twin_bytes, twin_s = measure_twin(proxy, ca, root / "small", args)

        media_dir = root / "small" / "media"
        static_process = subprocess.Popen(
            [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(media_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        base = re.search(r"port (\d+)", static_process.stdout.readline()).group(1)
        base = f"http://127.0.0.1:{base}"
        names = sorted(p.name for p in media_dir.glob("*.mp4"))
        plain = [httpx.Client(timeout=60) for _ in range(args.concurrency)]

        def static_media(index: int) -> int:
            name = names[int(time.perf_counter() * 1000) % len(names)]
            return len(plain[index].get(f"{base}/{name}").content)

        _, static_bytes, static_s = hammer(static_media, args.seconds, args.concurrency)
        static_process.terminate()
        static_process.wait(timeout=30)
        shutil.rmtree(root / "large")

    twin_mbs, static_mbs = twin_bytes / twin_s / 1e6, static_bytes / static_s / 1e6
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"startup on 10,000 videos: {startup_s:.2f} s (aim < 2 s: {'met' if startup_s < 2 else 'NOT met'})")
    print(f"video pages through the proxy: {pages / pages_s:.0f} pages/s ({args.concurrency} clients)")
    print(f"media through the proxy:       {twin_mbs:.0f} MB/s")
    print(f"static file server, plain HTTP: {static_mbs:.0f} MB/s")
    ratio = twin_mbs / static_mbs
    print(f"twin / static: {ratio:.2f} (aim >= 0.5: {'met' if ratio >= 0.5 else 'NOT met'})")


if __name__ == "__main__":
    main()
