"""The metadata path at scale: 5,000 videos of the For You feed through the twin, each stored once.

A guard against what grows with the store (a query over every target per listing page, a set of
every id, a page of the feed that is fetched twice); the figures at 29,000 and 290,000 videos come
from `benchmarks/collect.py --scale`.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tkds.collector import browser
from tkds.collector.browser import BrowserSession
from tkds.collector.parse import parse_api
from tkds.collector.politeness import RateLimiter
from tkds.collector.store import MEMORY_LIMIT, Store
from tkds.errors import TkdsError
from tkds.synth import generate
from tkds.twin import serve

TKDS = [sys.executable, "-m", "tkds"]
VIDEOS = 5000
LIMIT = VIDEOS - 100  # the feed goes on past the limit, and no call may be made for it
FEED_PAGE = 30  # items per call of the For You feed
FEED_API = "/api/recommend/item_list/"


@pytest.fixture(scope="module")
def feed_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5,000 posts' full metadata, their media two pooled one-second clips: the feed's whole corpus."""
    out = tmp_path_factory.mktemp("feed5000") / "corpus"
    generate(out, VIDEOS, seed=5, size=(72, 128), seconds=(1.0, 1.0), media_pool=2, progress=False)
    return out


def query(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as connection:
        return connection.execute(sql).fetchall()


@pytest.mark.slow
def test_5000_videos_of_the_feed_are_each_stored_once_for_one_feed_call_per_30(
    feed_corpus: Path, tmp_path: Path
) -> None:
    items = {
        item["id"]: item
        for item in (json.loads(path.read_text()) for path in (feed_corpus / "items").glob("*.json"))
    }
    assert len(items) == VIDEOS
    db = tmp_path / "feed.duckdb"
    with serve(feed_corpus, seed=14) as twin:
        command = [*TKDS, "collect", "--db", str(db), "--proxy", twin.proxy_url]
        command += ["--ca-cert", str(twin.ca_path), "--trending", "--no-media", "--limit", str(LIMIT)]
        command += ["--rate", "1000", "--concurrency", "8"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        seen = list(twin.state.requests)
    assert result.returncode == 0, result.stderr[-2000:]

    # Every video once, with what its item said.
    rows = query(
        db,
        """SELECT id, author_id, music_id, description, epoch(create_time)::BIGINT, duration_s, width,
                  height, source FROM videos""",
    )
    assert len(rows) == len({row[0] for row in rows}) == LIMIT and {row[0] for row in rows} <= set(items)
    for video_id, author, music, description, created, duration, width, height, source in rows:
        item = items[video_id]
        assert (author, music, description) == (item["author"]["id"], item["music"]["id"], item["desc"])
        assert created == int(item["createTime"]) and duration == item["video"]["duration"]
        assert (width, height) == (item["video"]["width"], item["video"]["height"])
        assert source == "trending:foryou"
    assert query(
        db, "SELECT count(*), count(DISTINCT video_id), count(plays), count(collects) FROM video_stats"
    ) == [(LIMIT,) * 4]
    tags: dict[str, list[str]] = {}
    for video_id, tag in query(db, "SELECT video_id, tag FROM video_hashtags ORDER BY video_id, position"):
        tags.setdefault(video_id, []).append(tag)
    for video_id in (row[0] for row in rows):
        item = items[video_id]
        caption = [e["hashtagName"].lower() for e in item["textExtra"] if e["type"] == 1]
        assert tags.get(video_id, []) == list(dict.fromkeys(caption))
    authors = {items[row[0]]["author"]["id"] for row in rows}
    assert query(db, "SELECT count(*), count(DISTINCT id), count(sec_uid) FROM authors") == [
        (len(authors),) * 3
    ]
    assert query(db, "SELECT count(DISTINCT author_id) FROM author_stats") == [(len(authors),)]
    assert query(db, "SELECT kind, status, count(*) FROM crawl_targets GROUP BY ALL ORDER BY ALL") == [
        ("trending", "done", 1),
        ("video", "done", LIMIT),
    ]

    # What TikTok saw: one feed call per 30 videos (none twice, none past the limit), no video page.
    feed_calls = sum(1 for _, _, path in seen if path == FEED_API)
    assert feed_calls == math.ceil(LIMIT / FEED_PAGE)
    assert not [path for _, _, path in seen if "/video/" in path]
    counts = json.loads(query(db, "SELECT counts FROM crawl_runs")[0][0])
    assert counts["requests_total"] == len(seen)
    assert counts["videos_collected"] == LIMIT and counts["details_skipped"] == LIMIT
    assert counts["requests_per_video"] <= 1.1 / FEED_PAGE


@pytest.mark.slow
def test_a_database_disk_that_fills_mid_run_stops_it_in_one_line_and_a_rerun_ends_whole(
    feed_corpus: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(folder)]).returncode != 0:
        pytest.skip("mounting a tmpfs needs root; a full disk cannot be simulated here")
    db, limit = folder / "feed.duckdb", 1500  # about 7 MB of DuckDB: the 3 MB disk fills mid-run
    try:
        with serve(feed_corpus, seed=15) as twin:
            command = [*TKDS, "collect", "--db", str(db), "--proxy", twin.proxy_url]
            command += ["--ca-cert", str(twin.ca_path), "--trending", "--no-media", "--limit", str(limit)]
            command += ["--rate", "1000"]
            full = subprocess.run(command, capture_output=True, text=True, timeout=600)
            assert full.returncode == 1, full.stderr[-2000:]
            lines = [line for line in full.stderr.splitlines() if line.startswith("tkds: error")]
            assert len(lines) == 1 and "is full" in lines[0] and "re-run the same command" in lines[0]
            assert "Traceback" not in full.stderr

            subprocess.run(["mount", "-o", "remount,size=64m", str(folder)], check=True)
            again = subprocess.run(command, capture_output=True, text=True, timeout=600)
            assert again.returncode == 0, again.stderr[-2000:]
        assert query(db, "SELECT count(*), count(DISTINCT id) FROM videos") == [(limit, limit)]
        assert query(db, "SELECT count(*) FROM crawl_targets WHERE kind = 'video' AND status = 'done'") == [
            (limit,)
        ]
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_store_past_duckdbs_memory_cap_is_one_clear_error(feed_corpus: Path, tmp_path: Path) -> None:
    items = [json.loads(path.read_text()) for path in sorted((feed_corpus / "items").glob("*.json"))[:240]]
    parsed = parse_api({"statusCode": 0, "itemList": items, "hasMore": True, "cursor": "240"})
    with Store.open(tmp_path / "tk.duckdb") as store:
        # What a store whose indexes outgrew the cap meets on its next write, here at once.
        store.db.execute("SET memory_limit = '1MB'")
        with pytest.raises(TkdsError) as raised:
            store.upsert(parsed, source="trending:foryou")
        store.db.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
        assert store.count("videos") == 0
    message = str(raised.value)
    assert "memory cap" in message and "another --db" in message and "\n" not in message


def test_a_long_feed_renews_its_page_without_losing_or_adding_a_call(
    feed_corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(browser, "PAGE_CALLS", 20)
    calls = 45  # two renewals

    async def scroll(twin) -> tuple[list[str], list[int]]:
        listed, held = [], []
        async with BrowserSession(twin.proxy_url, True, RateLimiter(1000)) as session:
            listing = await session.open("https://www.tiktok.com/foryou", FEED_API)
            listed += [v.id for _, body in listing.responses for v in parse_api(json.loads(body)).videos]
            for _ in range(calls):
                status, body, _ = await session.signed_fetch(
                    FEED_API, {**listing.params, "cursor": "0", "count": "30"}
                )
                assert status == 200
                listed += [v.id for v in parse_api(json.loads(body)).videos]
                held.append(len(session.page._impl_obj._connection._objects))
        return listed, held

    with serve(feed_corpus, seed=16) as twin:
        listed, held = asyncio.run(scroll(twin))
        seen = [path for _, host, path in twin.state.requests if host == "www.tiktok.com"]
    # Every call a new part of the feed: the renewed pages' own item-list calls were never sent.
    assert len(listed) == len(set(listed)) == (calls + 1) * FEED_PAGE
    assert seen.count(FEED_API) == calls + 1 and seen.count("/foryou") == 3
    # What Playwright holds drops with each renewal instead of growing with every call.
    assert max(held) < held[browser.PAGE_CALLS - 1] + 10 and held[-1] < held[browser.PAGE_CALLS - 1]
