"""What TikTok sees of a collect run: requests by kind, counted by tkds and by the twin's request log.

A run spends about one request per video: the listing (30 items a call), then each video's bytes from
the play URL the listing gave. Video pages are fetched only when a listing item lacks a stored field
(`--detail auto`), and yt-dlp's extractor only when TikTok refuses a play URL.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tkds.collector.detail import complete_items
from tkds.collector.parse import parse_capture
from tkds.synth import generate
from tkds.twin import serve

TKDS = [sys.executable, "-m", "tkds"]
TAG, VIDEOS = "fyp", 60
# Columns that say when or by which stage a row was written, not what TikTok said.
WHEN_COLUMNS = {"first_seen", "last_seen", "observed_at", "fetched_at", "updated_at", "source"}
STORED_TABLES = ("videos", "authors", "music", "video_hashtags", "video_stats", "author_stats", "media")


@pytest.fixture(scope="module")
def tag_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """140 one-second videos, 68 of them tagged #fyp: a 60-video hashtag with room to spare."""
    out = tmp_path_factory.mktemp("twin140") / "corpus"
    generate(out, 140, seed=11, seconds=(1.0, 1.0), progress=False)
    return out


def run_collect(twin, db: Path, *args: str) -> dict:
    """One `tkds collect` through the twin; returns its crawl_runs counts and the requests the twin saw."""
    before = len(twin.state.requests)
    command = [*TKDS, "collect", "--db", str(db), "--proxy", twin.proxy_url, "--ca-cert", str(twin.ca_path)]
    result = subprocess.run([*command, "--rate", "60", *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "requests to TikTok" in result.stderr
    seen = list(twin.state.requests)[before:]
    with duckdb.connect(str(db), read_only=True) as connection:
        rows = connection.execute("SELECT counts FROM crawl_runs ORDER BY started_at").fetchall()
    return {"counts": json.loads(rows[-1][0]), "seen": seen}


def stored(db: Path) -> dict[str, set[tuple]]:
    """Every table's distinct rows over the columns that hold what TikTok said."""
    tables = {}
    with duckdb.connect(str(db), read_only=True) as connection:
        for table in STORED_TABLES:
            columns = [
                row[0]
                for row in connection.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index",
                    [table],
                ).fetchall()
                if row[0] not in WHEN_COLUMNS and not (table == "media" and row[0] == "path")
            ]
            query = f"SELECT DISTINCT {', '.join(columns)} FROM {table}"
            tables[table] = set(connection.execute(query).fetchall())
    return tables


@pytest.mark.slow
def test_one_request_per_video_with_media_and_a_twentieth_without(tag_corpus: Path, tmp_path: Path) -> None:
    # speed 0: the twin's clock stands still, so no play URL expires during the run.
    with serve(tag_corpus, seed=21, speed=0) as twin:
        metadata = run_collect(
            twin, tmp_path / "meta.duckdb", "--hashtag", TAG, "--limit", str(VIDEOS), "--no-media"
        )
        media = run_collect(
            twin,
            tmp_path / "media.duckdb",
            "--hashtag",
            TAG,
            "--limit",
            str(VIDEOS),
            "--media",
            str(tmp_path / "m"),
        )
    for run in (metadata, media):
        counts = run["counts"]
        assert counts["videos_collected"] == VIDEOS
        # The summary's count is what the twin logged, request for request.
        assert counts["requests_total"] == len(run["seen"])
        assert counts["requests_per_video"] == pytest.approx(len(run["seen"]) / VIDEOS, abs=1e-4)
    assert metadata["counts"]["requests_per_video"] <= 0.05
    assert metadata["counts"]["details_skipped"] == VIDEOS and metadata["counts"]["details_ok"] == 0
    assert media["counts"]["requests_per_video"] <= 1.05
    assert media["counts"]["media_ok"] == VIDEOS and media["counts"]["media_fallbacks"] == 0
    assert media["counts"]["requests"]["media"] == VIDEOS
    assert sum(1 for _, host, _ in media["seen"] if host.startswith("v16-")) == VIDEOS


@pytest.mark.slow
def test_auto_detail_stores_every_field_that_always_does(tag_corpus: Path, tmp_path: Path) -> None:
    always_db, auto_db = tmp_path / "always.duckdb", tmp_path / "auto.duckdb"
    with serve(tag_corpus, seed=22, speed=0) as twin:
        listed = twin.state.corpus.by_tag[TAG][:VIDEOS]
        url_video = listed[0]
        urls = tmp_path / "urls.txt"
        urls.write_text(
            f"https://www.tiktok.com/@{twin.state.corpus.author_of[url_video]}/video/{url_video}\n"
        )
        args = ["--hashtag", TAG, "--limit", str(VIDEOS)]
        always = run_collect(twin, always_db, *args, "--detail", "always", "--media", str(tmp_path / "a"))
        auto = run_collect(twin, auto_db, *args, "--urls", str(urls), "--media", str(tmp_path / "b"))
        never = run_collect(twin, tmp_path / "never.duckdb", *args, "--no-media", "--detail", "never")
    assert always["counts"]["details_ok"] == VIDEOS
    # auto fetches only the page a --urls target names; never fetches none.
    assert auto["counts"]["details_ok"] == 1 and auto["counts"]["details_skipped"] == VIDEOS - 1
    assert never["counts"]["details_ok"] == 0
    assert always["counts"]["requests"]["pages"] == VIDEOS + 1
    assert auto["counts"]["requests"]["pages"] == 2
    # Nothing lost: every stored column but the write times and the stage that wrote it, raw included.
    always_rows, auto_rows = stored(always_db), stored(auto_db)
    for table in STORED_TABLES:
        assert always_rows[table], table
        assert auto_rows[table] == always_rows[table], table


@pytest.mark.slow
def test_an_expired_play_url_falls_back_to_yt_dlp_which_fetches_a_fresh_one(
    tag_corpus: Path, tmp_path: Path
) -> None:
    db, media, videos = tmp_path / "tk.duckdb", tmp_path / "media", 12
    with serve(tag_corpus, seed=23, speed=0) as twin:
        run_collect(twin, db, "--hashtag", TAG, "--limit", str(videos), "--no-media")
        twin.clock.advance(3 * 3600)  # past the play URLs' two-hour lifetime
        run = run_collect(twin, db, "--hashtag", TAG, "--limit", str(videos), "--media", str(media))
    counts = run["counts"]
    assert counts["media_ok"] == videos and counts["media_fallbacks"] == videos
    assert len(list(media.glob("*.mp4"))) == videos and not (media / ".partial").exists()
    # Each video: the refused play URL, yt-dlp's page fetch, the fresh URL's bytes. The listing is done, so
    # the run opens the home page (and its feed call) once for the session's cookies.
    assert counts["requests"] == {"pages": videos + 1, "api": 1, "media": 2 * videos, "images": 0, "other": 0}
    assert counts["requests_total"] == len(run["seen"])
    with duckdb.connect(str(db), read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM media WHERE status = 'ok'").fetchone() == (videos,)


@pytest.mark.slow
def test_a_run_given_only_video_urls_downloads_media_directly(tag_corpus: Path, tmp_path: Path) -> None:
    # No listing is opened, so the run visits the home page once for the CDN's tt_chain_token.
    urls = tmp_path / "urls.txt"
    with serve(tag_corpus, seed=25, speed=0) as twin:
        ids = sorted(twin.state.corpus.item_paths)[:5]
        author = twin.state.corpus.author_of
        urls.write_text("".join(f"https://www.tiktok.com/@{author[v]}/video/{v}\n" for v in ids))
        run = run_collect(twin, tmp_path / "tk.duckdb", "--urls", str(urls), "--media", str(tmp_path / "m"))
    assert run["counts"]["media_ok"] == len(ids)
    assert run["counts"]["media_fallbacks"] == 0


@pytest.mark.slow
def test_direct_media_downloads_wait_on_the_rate_limiter(tag_corpus: Path, tmp_path: Path) -> None:
    rate, videos = 5, 20
    with serve(tag_corpus, seed=24, speed=0) as twin:
        args = ["--hashtag", TAG, "--limit", str(videos), "--media", str(tmp_path / "media")]
        # The later --rate wins over run_collect's.
        run = run_collect(twin, tmp_path / "tk.duckdb", *args, "--rate", str(rate), "--concurrency", "8")
    assert run["counts"]["media_ok"] == videos and run["counts"]["media_fallbacks"] == 0
    times = [t for t, _, path in run["seen"] if path.startswith("/video/tos/")]
    assert len(times) == videos
    # Any rate + 1 consecutive downloads span a second (0.1 s left for jitter on the way to the twin);
    # unthrottled, eight at a time would start together.
    spans = [later - earlier for earlier, later in zip(times, times[rate:], strict=False)]
    assert min(spans) >= 0.9, f"{rate + 1} media requests within {min(spans):.3f} s"


def test_auto_detail_judges_real_listing_items_by_the_fields_they_carry(tiktok_fixtures: Path) -> None:
    # A 2023 profile's items carry everything the store keeps: no page is needed for any of them.
    profile = parse_capture(tiktok_fixtures / "sigi_state_profile_2023.json")
    assert complete_items(profile) == {v.id for v in profile.videos}
    # Search results come without the sound, and 2021's stats without collectCount: pages are needed.
    for capture in ("search_items_2026.json", "api_item_list_2021.json"):
        parsed = parse_capture(tiktok_fixtures / capture)
        assert parsed.videos and complete_items(parsed) == set(), capture
