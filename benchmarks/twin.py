"""The twin's speed against its limit: a plain static file server on the same files, same run.

Prints:
  startup      seconds to index and start on a 10,000-video corpus (aim: under 2 s)
  pages/s      video pages through the proxy (TLS, cookies, embedded JSON), with concurrency
  media MB/s   mp4 bytes through the proxy, next to `python -m http.server` serving the same
               files over plain HTTP, with the same clients; ratio aim >= 0.5. Each server is
               its own process, as in use.

    python benchmarks/twin.py [--seconds 5] [--concurrency 8]

Scale mode: `tkds twin` on a thesis-sized corpus, and on its first tenth in the same run.

    python benchmarks/twin.py --corpus PATH [--videos N] [--seconds 5] [--concurrency 8]

writes N videos to PATH with `tkds synth --media-pool 64` if PATH holds no corpus yet, then prints
start-up (from launch to the first page through the proxy; cold: no .twin-index, then with it) and
peak resident memory, each as a ratio of its limit (30 s, 3 GB), and requests/s and ms per request
for each kind of request the collector and clients make, with the ratio of ms at N to ms at N/10
(1.0: the cost of a request does not grow with the corpus). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from tkds.synth import generate
from tkds.twin import serve, spawn
from tkds.twin.corpus import INDEX_NAME
from tkds.twin.signer import path_and_query, sign

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
    """Run `fetch(worker)` in `concurrency` threads for `seconds`; returns (requests, sum of what each
    fetch returned (bytes, or items served), elapsed)."""
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


STARTUP_LIMIT_S = 30.0
RSS_LIMIT_MB = 3 * 1024
ROUNDS = 3
SALT = re.compile(r"var salt = '([0-9a-f]+)'")


def reference_corpus(corpus: Path, target: Path, videos: int) -> None:
    """The first `videos` items of `corpus` (by file name), linked, not copied."""
    (target / "items").mkdir(parents=True)
    (target / "media").mkdir()
    shutil.copy(corpus / "corpus.json", target / "corpus.json")
    names = sorted(n for n in os.listdir(corpus / "items") if n.endswith(".json"))[:videos]
    for name in names:
        os.symlink((corpus / "items" / name).resolve(), target / "items" / name)
        media = corpus / "media" / name.replace(".json", ".mp4")
        if media.exists():
            os.symlink(media.resolve(), target / "media" / media.name)


def memory_mb(pid: int) -> tuple[float, float]:
    """(peak, current) resident memory of a process, MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    field = {k: float(v.split()[0]) / 1024 for k, v in re.findall(r"^(VmHWM|VmRSS):\s+(.*)$", status, re.M)}
    return field["VmHWM"], field["VmRSS"]


def cpu_s(pid: int, with_children: bool = False) -> float:
    """User plus system CPU seconds a process has used (and its finished children, e.g. parse workers)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    used = sum(int(value) for value in fields[11 : 15 if with_children else 13])
    return used / os.sysconf("SC_CLK_TCK")


class RunningTwin:
    """`tkds twin` in its own process, as a user starts it; ready once a page comes through."""

    def __init__(self, corpus: Path, ca: Path) -> None:
        started = time.perf_counter()
        command = [sys.executable, "-m", "tkds", "twin", "--corpus", str(corpus), "--port", "0"]
        self.process = subprocess.Popen(
            [*command, "--ca-out", str(ca)], stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        while not (found := re.search(r"http://127\.0\.0\.1:\d+", self.process.stderr.readline() or "EOF")):
            if self.process.poll() is not None:
                raise SystemExit(f"tkds twin exited: {self.process.stderr.read().strip()}")
        self.proxy, self.trust = found.group(0), ssl.create_default_context(cafile=ca)
        with self.client() as first:
            page = first.get("https://www.tiktok.com/foryou")
            page.raise_for_status()
        self.startup_s = time.perf_counter() - started
        self.startup_cpu_s = cpu_s(self.process.pid, with_children=True)
        self.salt = SALT.search(page.text).group(1)  # the key the page's own script signs with

    def client(self) -> httpx.Client:
        return httpx.Client(proxy=self.proxy, verify=self.trust, timeout=60)

    def signed(self, session: httpx.Client, path: str, params: dict) -> httpx.Response:
        """An API call as the page's script makes it: msToken from the cookie, the page's signature."""
        query = {**params, "msToken": session.cookies["msToken"]}
        url = httpx.URL(f"https://www.tiktok.com{path}", params=query)
        return session.get(url.copy_add_param("X-Bogus", sign(path_and_query(str(url)), self.salt)))

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGINT)
        self.process.communicate(timeout=60)


@dataclass
class Subjects:
    """What the requests ask for, drawn from the first tenth so that both sizes get the same requests.

    Lists are of tags, sounds and users with at least a page of items in the tenth, so every list
    request serves a full page at both sizes.
    """

    items: list[dict]
    tags: list[str]
    sounds: list[str]
    users: list[str]
    words: list[str]


def subjects(reference: Path, page: int = 30) -> Subjects:
    items = [json.loads(path.read_bytes()) for path in sorted((reference / "items").glob("*.json"))]
    tags, sounds, users, words = Counter(), Counter(), Counter(), Counter()
    for item in items:
        tags.update({str(c["id"]) for c in item.get("challenges") or []})
        sounds[str(item["music"]["id"])] += 1
        users[item["author"]["secUid"]] += 1
        words.update(set(item["desc"].lower().split()))

    def popular(counts: Counter) -> list[str]:  # at least a page, else the ten biggest
        return [key for key, n in counts.most_common() if n >= page] or [k for k, _ in counts.most_common(10)]

    sample = random.Random(0).sample(items, min(2000, len(items)))
    return Subjects(sample, popular(tags), popular(sounds), popular(users), popular(words)[:50])


def request_kinds(twin: RunningTwin, subject: Subjects) -> dict:
    """Each kind of request, as fetch(session, rng) -> the number of items (or comments) it served."""
    items = subject.items

    def check(response: httpx.Response, json_body: bool = True) -> int:
        response.raise_for_status()
        if not json_body:
            return 1
        body = response.json()
        if body.get("statusCode") != 0:
            raise SystemExit(f"{response.url.path}: {response.text[:200]}")
        listed = body.get("itemList", body.get("item_list", body.get("comments")))
        return 1 if listed is None else len(listed)

    def api(path: str, params) -> callable:
        return lambda session, rng: check(twin.signed(session, path, params(rng)))

    def page(session: httpx.Client, rng: random.Random) -> int:
        item = rng.choice(items)
        url = f"https://www.tiktok.com/@{item['author']['uniqueId']}/video/{item['id']}"
        return check(session.get(url), json_body=False)

    def media(session: httpx.Client, rng: random.Random) -> int:
        item = twin.signed(session, "/api/item/detail/", {"itemId": rng.choice(items)["id"]}).json()
        url = item["itemInfo"]["itemStruct"]["video"]["playAddr"]
        return check(session.get(url, headers=REFERER), json_body=False)

    return {
        "video page": page,
        "item detail": api("/api/item/detail/", lambda rng: {"itemId": rng.choice(items)["id"]}),
        "For You list": api("/api/recommend/item_list/", lambda rng: {"count": 30, "from_page": "fyp"}),
        "tag list": api(
            "/api/challenge/item_list/", lambda rng: {"challengeID": rng.choice(subject.tags), "count": 30}
        ),
        "user posts": api(
            "/api/post/item_list/",
            lambda rng: {"secUid": rng.choice(subject.users), "count": 30, "cursor": 0},
        ),
        "sound list": api(
            "/api/music/item_list/", lambda rng: {"musicID": rng.choice(subject.sounds), "count": 30}
        ),
        "search, a repeated word": api(  # five common words: after the first asks, from the cache
            "/api/search/item/full/", lambda rng: {"keyword": rng.choice(subject.words[:5]), "count": 12}
        ),
        "search, a new query": api(  # a user's name: mostly a query not asked before, so not cached
            "/api/search/item/full/",
            lambda rng: {"keyword": rng.choice(items)["author"]["uniqueId"], "count": 12},
        ),
        "comments": api("/api/comment/list/", lambda rng: {"aweme_id": rng.choice(items)["id"], "count": 20}),
        "media (item detail + mp4)": media,
    }


class Load:
    """One running twin and its clients, each with its own cookies."""

    def __init__(self, twin: RunningTwin, subject: Subjects, concurrency: int) -> None:
        self.twin, self.kinds = twin, request_kinds(twin, subject)
        self.sessions = [twin.client() for _ in range(concurrency)]
        for session, item in zip(self.sessions, subject.items, strict=False):  # a visit sets cookies
            session.get(f"https://www.tiktok.com/@{item['author']['uniqueId']}/video/{item['id']}")
        self.rngs = [random.Random(n) for n in range(concurrency)]
        self.totals = {kind: [0, 0, 0.0, 0.0] for kind in self.kinds}  # requests, items, wall s, CPU s

    def run(self, kind: str, seconds: float) -> None:
        fetch, before = self.kinds[kind], cpu_s(self.twin.process.pid)
        count, served, elapsed = hammer(
            lambda n: fetch(self.sessions[n], self.rngs[n]), seconds, len(self.sessions)
        )
        total = self.totals[kind]
        total[0] += count
        total[1] += served
        total[2] += elapsed
        total[3] += cpu_s(self.twin.process.pid) - before

    def figures(self) -> dict[str, dict[str, float]]:
        return {
            kind: {
                "per_s": n / wall,
                "items_per_request": served / n,
                "cpu_ms": 1000 * cpu / n,
                "cpu_ms_per_item": 1000 * cpu / max(served, 1),
            }
            for kind, (n, served, wall, cpu) in self.totals.items()
        }

    def close(self) -> None:
        for session in self.sessions:
            session.close()


def startups(corpus: Path, ca: Path) -> tuple[dict[str, float], RunningTwin]:
    """Launch to first page (wall and CPU s) without .twin-index, then with it; the second keeps running."""
    (corpus / INDEX_NAME).unlink(missing_ok=True)
    cold = RunningTwin(corpus, ca)
    cold.stop()
    indexed = RunningTwin(corpus, ca)
    figures = {
        "startup_cold_s": cold.startup_s,
        "startup_cold_cpu_s": cold.startup_cpu_s,
        "startup_indexed_s": indexed.startup_s,
        "startup_indexed_cpu_s": indexed.startup_cpu_s,
    }
    return figures, indexed


def scale(args: argparse.Namespace) -> None:
    corpus = args.corpus
    if not (corpus / "items").is_dir():
        if not args.videos:
            raise SystemExit(f"{corpus} holds no corpus; pass --videos N to write one there")
        command = [sys.executable, "-m", "tkds", "synth", str(corpus), "--videos", str(args.videos)]
        subprocess.run([*command, "--media-pool", "64"], check=True)
    sizes = {}
    with tempfile.TemporaryDirectory(prefix="tkds-twin-scale-") as tmp:
        videos = len([n for n in os.listdir(corpus / "items") if n.endswith(".json")])
        tenth = Path(tmp) / "tenth"
        reference_corpus(corpus, tenth, videos // 10)
        subject = subjects(tenth)
        twins = {}
        try:
            for label, root, count in (("N/10", tenth, videos // 10), ("N", corpus, videos)):
                figures, twins[label] = startups(root, Path(tmp) / f"ca-{count}.pem")
                sizes[label] = {"videos": count, **figures}
            loads = {label: Load(twin, subject, args.concurrency) for label, twin in twins.items()}
            # Both twins run at once, and each kind alternates between them in short rounds, so
            # that other work on the machine falls on both alike.
            for kind in next(iter(loads.values())).kinds:
                for _ in range(ROUNDS):
                    for load in loads.values():
                        load.run(kind, args.seconds / ROUNDS)
            for label, load in loads.items():
                sizes[label]["requests"] = load.figures()
                sizes[label]["rss_peak_mb"], sizes[label]["rss_end_mb"] = memory_mb(load.twin.process.pid)
                load.close()
        finally:
            for twin in twins.values():
                twin.stop()

    small, big = sizes["N/10"], sizes["N"]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (others' work inflates wall times)")
    print(f"tkds twin on {big['videos']:,} videos ({corpus}) and on its first {small['videos']:,}")
    print(f"{'':30}{'N/10':>9}{'N':>9}  ratio")
    for key, label, limit, unit in (
        ("startup_cold_s", "start-up s, first (parse)", STARTUP_LIMIT_S, "30 s"),
        ("startup_cold_cpu_s", "  its CPU s, workers included", STARTUP_LIMIT_S, "30 s"),
        ("startup_indexed_s", "start-up s, with .twin-index", STARTUP_LIMIT_S, "30 s"),
        ("startup_indexed_cpu_s", "  its CPU s", STARTUP_LIMIT_S, "30 s"),
        ("rss_peak_mb", "peak resident MB", RSS_LIMIT_MB, "3 GB"),
    ):
        print(f"{label:30}{small[key]:>9.1f}{big[key]:>9.1f}  {big[key] / limit:.2f} of the {unit} limit")
    print("twin CPU ms per request, ratio N vs N/10 (per item served), items/request, requests/s")
    print(f"with {args.concurrency} clients; the same requests at both sizes")
    ratios = {}
    for kind, figures in big["requests"].items():
        before = small["requests"][kind]
        ratios[kind] = figures["cpu_ms_per_item"] / before["cpu_ms_per_item"]
        print(
            f"  {kind:28}{before['cpu_ms']:>7.2f}{figures['cpu_ms']:>7.2f}  {ratios[kind]:.2f}"
            f"  {before['items_per_request']:>5.1f}{figures['items_per_request']:>5.1f}"
            f"  {before['per_s']:>6.0f}/s{figures['per_s']:>6.0f}/s"
        )
    print(json.dumps({"tenth": small, "full": big, "cpu_ms_ratio": ratios}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--corpus", type=Path, help="scale mode: tkds twin on this corpus (see above)")
    parser.add_argument("--videos", type=int, help="scale mode: videos to write if --corpus is empty")
    args = parser.parse_args()
    if args.corpus:
        scale(args)
        return

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
