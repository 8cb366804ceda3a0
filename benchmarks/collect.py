"""The collector's speed against its limits, measured in one run against `tkds twin` on loopback.

metadata     video pages/s of the detail stage (`--no-media`), next to yt-dlp's
             `extract_info(download=False)` run sequentially over the same pages; aim >= 5x
parse+upsert CPU ms per video for `parse_page` + `Store.upsert`; aim < 5 ms
media        MB/s of the media stage (yt-dlp + ffprobe + sha256), next to a plain concurrent httpx
             download of the same files; aim >= 0.8
peers        one hashtag through the same twin at the same --rate, without and with media, by tkds
             and by TikTok-Api 7.3.3 (unmodified; every request it makes waits for the same per-host
             limiter): videos/s and requests per video, counted in the twin's request log

scale        `tkds collect --trending --no-media` of N videos through `tkds twin` on an items-only corpus
             (`--scale N --corpus PATH`): videos/s end to end (aim >= 80), the first 10 % of the videos
             against the last 10 % (aim ~1.0: no slowdown as the store grows), the collector's peak
             resident memory and its growth per 100k videos, and the DuckDB file per 1,000 videos
             against the items' own JSON per 1,000

  python benchmarks/collect.py [--videos 48] [--concurrency 8] [--tag-videos 300] [--rate 5] [--only-peers]
  python benchmarks/collect.py --scale 29000 --corpus CORPUS [--rate 1000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
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
TARGET_VIDEOS_PER_S = 80.0  # issue 13: 290,000 videos' metadata in about an hour
SAMPLE_S = 2.0  # how often the scale run reads the collector's resident memory
MEMORY_GROWTH_MB_PER_100K = 50.0  # "flat": what the collector's RSS may grow per 100k videos stored
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


def _proc_kb(pid: int, file: str, field: str) -> int:
    """One "Field:  N kB" line of /proc/PID/FILE, 0 once the process is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _descendants(pid: int) -> list[int]:
    """`pid` and every process below it (the collector's Chromium)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += parents.get(found[-1], [])
    return found


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far, 0 once it is gone."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


class Sampler(threading.Thread):
    """Every SAMPLE_S: the wall time, the collector's RSS and its Chromium's PSS (kB), and the CPU
    seconds of the collector, of the collector with its Chromium, and of the twin."""

    def __init__(self, collector: int, twin: int) -> None:
        super().__init__(daemon=True)
        self.collector, self.twin, self.samples = collector, twin, []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(SAMPLE_S):
            tree = _descendants(self.collector)
            self.samples.append((
                time.time(),
                _proc_kb(self.collector, "status", "VmRSS"),
                sum(_proc_kb(p, "smaps_rollup", "Pss") for p in tree if p != self.collector),
                _cpu_s(self.collector),
                sum(_cpu_s(p) for p in tree),
                _cpu_s(self.twin),
            ))  # fmt: skip


def _at(samples: list[tuple], when: float, column: int) -> float:
    """A sampled column at `when`, interpolated between the samples around it."""
    before = [s for s in samples if s[0] <= when] or samples[:1]
    after = [s for s in samples if s[0] >= when] or samples[-1:]
    (t0, v0), (t1, v1) = (before[-1][0], before[-1][column]), (after[0][0], after[0][column])
    return v0 if t1 == t0 else v0 + (v1 - v0) * (when - t0) / (t1 - t0)


def _twin_pid() -> int:
    """The `tkds twin` process that `spawn` started under this one."""
    for pid in _descendants(os.getpid()):
        with contextlib.suppress(OSError):
            if b"twin" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                return pid
    raise SystemExit("the twin's process was not found")


def scale(corpus: Path, videos: int, rate: float, concurrency: int) -> dict:
    """`tkds collect --trending --no-media --limit N` through `tkds twin`, each in its own process."""
    items = corpus / "items"
    if not items.is_dir():
        raise SystemExit(f"--corpus {corpus} has no items/ folder; make one with `tkds synth`")
    with tempfile.TemporaryDirectory() as tmp, spawn(corpus, Path(tmp) / "ca.pem") as proxy:
        db = Path(tmp) / "scale.duckdb"
        command = [sys.executable, "-m", "tkds", "collect", "--trending", "--no-media"]
        command += ["--limit", str(videos), "--rate", str(rate), "--concurrency", str(concurrency)]
        command += ["--db", str(db), "--proxy", proxy, "--ca-cert", str(Path(tmp) / "ca.pem")]
        load = os.getloadavg()[0]
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        sampler = Sampler(process.pid, _twin_pid())
        sampler.start()
        _, stderr = process.communicate()
        wall = time.perf_counter() - started
        sampler.done.set()
        if process.returncode != 0:
            raise SystemExit(f"collect failed: {stderr[-2000:]}")
        load = max(load, os.getloadavg()[0])
        db_bytes = db.stat().st_size
        with duckdb.connect(str(db), read_only=True) as connection:
            seen = [
                row[0].replace(tzinfo=UTC).timestamp()
                for row in connection.execute("SELECT first_seen FROM videos ORDER BY first_seen").fetchall()
            ]
            counts = json.loads(connection.execute("SELECT counts FROM crawl_runs").fetchone()[0])
    samples = sampler.samples
    if len(samples) < 4:
        raise SystemExit(f"the run took {wall:.0f} s, too short to sample; collect more videos")
    stored, tenth = len(seen), max(1, len(seen) // 10)
    first, last = (seen[0], seen[tenth]), (seen[-1 - tenth], seen[-1])

    def per_video_ms(column: int, span: tuple[float, float]) -> float:
        return (_at(samples, span[1], column) - _at(samples, span[0], column)) * 1000 / tenth

    cpu = {name: per_video_ms(column, (seen[0], seen[-1])) * tenth / stored
           for name, column in (("collector", 3), ("chromium", 4), ("twin", 5))}  # fmt: skip
    cpu["chromium"] -= cpu["collector"]  # the tree's CPU less the collector's own
    # Idle cores: the collector and the twin are one Python thread each; all three share the cores.
    busiest = max(cpu["collector"], cpu["twin"], sum(cpu.values()) / (os.cpu_count() or 1))

    def growth_mb(column: int) -> float:  # per 100k videos, from the end of the first tenth on
        grown = _at(samples, seen[-1], column) - _at(samples, seen[tenth], column)
        return round(grown / 1024 / max(1, stored - tenth) * 100_000, 1)

    sizes = [path.stat().st_size for path in itertools.islice(items.iterdir(), 5000)]
    return {
        "videos": stored,
        "wall_s": round(wall, 1),
        "videos_per_s": round(stored / wall, 1),
        "first_last_wall_ratio": round((last[1] - last[0]) / (first[1] - first[0]), 3),
        "first_last_cpu_ratio": round(per_video_ms(4, last) / per_video_ms(4, first), 3),
        "cpu_ms_per_video": {name: round(ms, 2) for name, ms in cpu.items()},
        "idle_videos_per_s": round(1000 / busiest, 1),
        "peak_rss_mb": round(max(s[1] for s in samples) / 1024, 1),
        "peak_chromium_pss_mb": round(max(s[2] for s in samples) / 1024, 1),
        "rss_growth_mb_per_100k": growth_mb(1),
        "chromium_growth_mb_per_100k": growth_mb(2),
        "db_mb_per_1000": round(db_bytes / 1e6 / stored * 1000, 2),
        "items_json_mb_per_1000": round(sum(sizes) / 1e6 / len(sizes) * 1000, 2),
        "requests_per_video": counts["requests_per_video"],
        "load_average": round(load, 2),
    }


def print_scale(figures: dict, rate: float, concurrency: int) -> None:
    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    f = figures
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"load average up to {f['load_average']}")  # fmt: skip
    print(f"scale: {f['videos']} videos, --trending --no-media --rate {rate:g} --concurrency {concurrency}")
    speed, idle = f["videos_per_s"] / TARGET_VIDEOS_PER_S, f["idle_videos_per_s"] / TARGET_VIDEOS_PER_S
    print(f"  videos/s end to end: {f['videos_per_s']} in {f['wall_s']} s; ratio to {TARGET_VIDEOS_PER_S:g}: "
          f"{speed:.2f} ({verdict(speed >= 1)})")  # fmt: skip
    cpu = ", ".join(f"{name} {ms}" for name, ms in f["cpu_ms_per_video"].items())
    print(f"  CPU ms per video: {cpu}; on idle cores that is {f['idle_videos_per_s']} videos/s, ratio to "
          f"{TARGET_VIDEOS_PER_S:g}: {idle:.2f} ({verdict(idle >= 1)})")  # fmt: skip
    for name in ("wall", "cpu"):
        ratio = f[f"first_last_{name}_ratio"]
        print(f"  last 10 % of the videos against the first 10 %, {name} time: {ratio} "
              f"(aim <= 1.1, 1.0 = no slowdown: {verdict(ratio <= 1.1)})")  # fmt: skip
    for name, peak, growth in (
        ("collector", f"RSS {f['peak_rss_mb']}", f["rss_growth_mb_per_100k"]),
        ("its Chromium", f"PSS {f['peak_chromium_pss_mb']}", f["chromium_growth_mb_per_100k"]),
    ):
        ratio = growth / MEMORY_GROWTH_MB_PER_100K
        print(f"  {name}: peak {peak} MB, growth {growth} MB per 100k videos; ratio to "
              f"{MEMORY_GROWTH_MB_PER_100K:g} MB: {ratio:.2f} ({verdict(ratio <= 1)})")  # fmt: skip
    db = f["db_mb_per_1000"] / f["items_json_mb_per_1000"]
    print(f"  DuckDB {f['db_mb_per_1000']} MB per 1,000 videos; ratio to the items' JSON "
          f"({f['items_json_mb_per_1000']} MB per 1,000): {db:.2f} ({verdict(db <= 1)})")  # fmt: skip
    print(f"  requests per video: {f['requests_per_video']}")
    print(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tag-videos", type=int, default=300, help="corpus size for the peers section")
    parser.add_argument("--rate", type=float, default=5.0, help="requests/s per host in the peers section")
    parser.add_argument("--only-peers", action="store_true", help="run the peers section alone")
    parser.add_argument("--scale", type=int, metavar="N", help="collect N videos' metadata (needs --corpus)")
    parser.add_argument("--corpus", type=Path, help="an items-only corpus for --scale (tkds synth)")
    args = parser.parse_args()

    if args.scale:
        if args.corpus is None:
            parser.error("--scale needs --corpus")
        rate = args.rate if args.rate != parser.get_default("rate") else 1000.0
        print_scale(scale(args.corpus, args.scale, rate, args.concurrency), rate, args.concurrency)
        return

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
