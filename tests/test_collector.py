"""The collector end to end: the CLI, real Chromium and yt-dlp, the twin with faults on, and DuckDB."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from tkds.twin import serve

TKDS = [sys.executable, "-m", "tkds"]
FAULTS = {
    "rate429": 0.05,
    "error5xx": 0.05,
    "empty": 0.05,
    "reset": 0.03,
    "challenge": 0.05,
    "blocked": 0.03,
    "truncate": 0.1,
    "slow_s": 0.2,
}


def run_collect(twin, db: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [*TKDS, "collect", "--db", str(db), "--proxy", twin.proxy_url, "--ca-cert", str(twin.ca_path)]
    result = subprocess.run([*command, *args], capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"collect failed: {result.stderr[-2000:]}")
    return result


def query(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def media_digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.mp4"))}


@pytest.mark.slow
def test_collect_through_faults_gets_every_reachable_video(twin_corpus: Path, tmp_path: Path) -> None:
    db, media = tmp_path / "tk.duckdb", tmp_path / "media"
    # speed: the twin's clock runs 3600x, so media URLs expire two seconds after a page gives them out.
    with serve(twin_corpus, faults=FAULTS, seed=8, speed=3600) as twin:
        expected = twin.state.corpus.by_tag["fyp"][:30]
        result = run_collect(  # every video page too, so that the faults of all three stages are met
            twin, db, "--hashtag", "fyp", "--limit", "30", "--media", str(media), "--rate", "40",
            "--detail", "always",
        )  # fmt: skip
        fired = {k: v for k, v in twin.state.dice.fired.items() if v}
    assert len(fired) >= 4, f"the faults should have fired: {fired}"
    assert sorted(r[0] for r in query(db, "SELECT id FROM videos")) == sorted(expected)
    assert query(db, "SELECT kind, status FROM crawl_targets WHERE kind = 'hashtag'") == [("hashtag", "done")]
    statuses = dict(query(db, "SELECT status, count(*) FROM media GROUP BY status"))
    assert statuses.get("ok", 0) + statuses.get("failed", 0) == 30
    assert statuses.get("ok", 0) >= 27
    failed_without_reason = query(db, "SELECT count(*) FROM media WHERE status = 'failed' AND error IS NULL")
    assert failed_without_reason == [(0,)]
    ok_files = {f"{r[0]}.mp4" for r in query(db, "SELECT video_id FROM media WHERE status = 'ok'")}
    assert set(media_digests(media)) == ok_files and not (media / ".partial").exists()
    row = query(db, "SELECT sha256, bytes, has_audio, vcodec FROM media WHERE status = 'ok' LIMIT 1")[0]
    assert row[2] is True and row[3] == "h264" and len(row[0]) == 64
    counts = json.loads(query(db, "SELECT counts FROM crawl_runs")[0][0])
    assert counts["videos_new"] == 30 and counts["media_ok"] == statuses.get("ok", 0)
    assert "Collected into" in result.stderr and "video pages" in result.stderr

    # The dataset answers SQL: likes per follower by hashtag, from the latest snapshots.
    rows = query(
        db,
        """SELECT h.tag, avg(s.likes / a.followers) FROM video_hashtags h
           JOIN videos v ON v.id = h.video_id JOIN video_stats_latest s ON s.video_id = v.id
           JOIN author_stats_latest a ON a.author_id = v.author_id GROUP BY h.tag""",
    )
    assert ("fyp" in {r[0] for r in rows}) and all(r[1] is not None for r in rows)


@pytest.mark.slow
def test_refresh_stats_appends_growing_snapshots(twin_corpus: Path, tmp_path: Path) -> None:
    db = tmp_path / "tk.duckdb"
    with serve(twin_corpus, seed=9) as twin:
        run_collect(
            twin, db, "--user", twin.state.corpus.author_of[twin.state.corpus.newest_first[0]], "--no-media"
        )
        first = dict(query(db, "SELECT video_id, likes FROM video_stats_latest"))
        twin.clock.advance(30 * 86400)
        run_collect(twin, db, "--refresh-stats", "--no-media")
    snapshots = query(db, "SELECT video_id, count(*) FROM video_stats GROUP BY video_id")
    assert all(n >= 2 for _, n in snapshots) and len(snapshots) == len(first)
    later = dict(query(db, "SELECT video_id, likes FROM video_stats_latest"))
    assert all(later[v] >= first[v] for v in first) and any(later[v] > first[v] for v in first)


@pytest.mark.slow
def test_kill_9_then_the_same_command_ends_like_an_uninterrupted_run(
    twin_corpus: Path, tmp_path: Path
) -> None:
    with serve(twin_corpus, seed=10) as twin:
        args = ["--hashtag", "foryou", "--search", "cooking", "--limit", "15", "--rate", "60"]
        killed_db, killed_media = tmp_path / "killed.duckdb", tmp_path / "killed-media"
        command = [*TKDS, "collect", "--db", str(killed_db), "--proxy", twin.proxy_url]
        command += ["--ca-cert", str(twin.ca_path), "--media", str(killed_media), *args]
        process = subprocess.Popen(command, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 300
        while len(list(killed_media.glob("*.mp4"))) < 4:
            assert process.poll() is None, "collect finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        run_collect(twin, killed_db, "--media", str(killed_media), *args)

        clean_db, clean_media = tmp_path / "clean.duckdb", tmp_path / "clean-media"
        run_collect(twin, clean_db, "--media", str(clean_media), *args)

    for sql in (
        "SELECT id FROM videos ORDER BY id",
        "SELECT video_id, sha256 FROM media WHERE status = 'ok' ORDER BY video_id",
        "SELECT video_id, tag FROM video_hashtags ORDER BY ALL",
        "SELECT kind, key, status FROM crawl_targets WHERE kind <> 'media' ORDER BY ALL",
    ):
        assert query(killed_db, sql) == query(clean_db, sql), sql
    assert media_digests(killed_media) == media_digests(clean_media)
    assert not (killed_media / ".partial").exists()


@pytest.mark.slow
def test_the_twin_never_sees_more_than_the_rate(twin_corpus: Path, tmp_path: Path) -> None:
    rate = 5
    with serve(twin_corpus, seed=11) as twin:
        run_collect(  # every video page too, so that the run makes enough requests to meet the limit
            twin, tmp_path / "tk.duckdb", "--hashtag", "fyp", "--limit", "20", "--no-media", "--rate", "5",
            "--detail", "always",
        )  # fmt: skip
        times = [t for t, host, _ in twin.state.requests if host == "www.tiktok.com"]
    assert len(times) > 20
    # Any rate + 1 consecutive requests span a second; 0.1 s is left for jitter on the way to the twin.
    # Unthrottled, they would arrive milliseconds apart.
    spans = [later - earlier for earlier, later in zip(times, times[rate:], strict=False)]
    assert min(spans) >= 0.9, f"{rate + 1} requests within {min(spans):.3f} s"


def test_import_every_capture_with_exact_values(tiktok_fixtures: Path, tmp_path: Path) -> None:
    db = tmp_path / "import.duckdb"
    broken = tmp_path / "broken.json"
    broken.write_text('{"itemList": [')
    files = sorted(p for p in tiktok_fixtures.iterdir() if p.suffix in (".json", ".html"))
    result = subprocess.run(
        [*TKDS, "import", "--db", str(db), *map(str, files), str(broken)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert f"{len(files)} of {len(files) + 1} imported" in result.stderr
    assert "broken.json" in result.stderr and "malformed" in result.stderr

    items = json.loads((tiktok_fixtures / "api_item_list_2021.json").read_text())
    first = items[0]
    row = query(db, f"SELECT id, author_id, music_id FROM videos WHERE id = '{first['id']}'")
    assert row == [(first["id"], first["author"]["id"], first["music"]["id"])]
    likes = query(db, f"SELECT likes FROM video_stats WHERE video_id = '{first['id']}'")
    assert likes == [(first["stats"]["diggCount"],)]

    profile = json.loads((tiktok_fixtures / "profile_2026.json").read_text())[0]
    followers = query(db, f"SELECT followers FROM author_stats WHERE author_id = '{profile['user']['id']}'")
    assert followers == [(int(profile["statsV2"]["followerCount"]),)]  # exact, not the rounded stats

    sigi = json.loads((tiktok_fixtures / "sigi_state_profile_2023.json").read_text())
    item = next(iter(sigi["ItemModule"].values()))
    user = sigi["UserModule"]["users"][item["author"]]
    author = query(
        db, f"SELECT a.sec_uid FROM videos v JOIN authors a ON a.id = v.author_id WHERE v.id = '{item['id']}'"
    )
    assert author == [(user["secUid"],)]
    tags = [
        r[0]
        for r in query(
            db, f"SELECT tag FROM video_hashtags WHERE video_id = '{item['id']}' ORDER BY position"
        )
    ]
    caption = [e["hashtagName"].lower() for e in item["textExtra"] if e["type"] == 1]
    assert tags[: len(caption)] == list(dict.fromkeys(caption))
    assert query(db, "SELECT count(*) FROM comments") == [(20,)]

    again = subprocess.run(
        [*TKDS, "import", "--db", str(db), *map(str, files)], capture_output=True, text=True
    )
    assert again.returncode == 0 and "0 new" in again.stderr
    assert query(db, "SELECT count(*) FROM videos") == query(db, "SELECT count(DISTINCT id) FROM videos")


def test_a_corrupt_or_locked_database_is_refused_untouched(tiktok_fixtures: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.duckdb"
    corrupt.write_bytes(b"this is not a database" * 100)
    before = corrupt.read_bytes()
    capture = str(tiktok_fixtures / "api_item_list_2021.json")
    result = subprocess.run([*TKDS, "import", "--db", str(corrupt), capture], capture_output=True, text=True)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "cannot open" in result.stderr and corrupt.read_bytes() == before

    locked = tmp_path / "locked.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(locked)!r}); print('ready', flush=True); "
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        result = subprocess.run(
            [*TKDS, "import", "--db", str(locked), capture], capture_output=True, text=True
        )
        assert result.returncode == 1 and "in use by another process" in result.stderr
    finally:
        holder.kill()


@pytest.mark.slow
def test_a_full_disk_stops_the_run_cleanly_and_a_rerun_resumes(twin_corpus: Path, tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=150k", "tmpfs", str(media)]).returncode != 0:
        pytest.skip("mounting a tmpfs needs root; a full disk cannot be simulated here")
    db = tmp_path / "tk.duckdb"
    try:
        with serve(twin_corpus, seed=12) as twin:
            args = ["--hashtag", "fyp", "--limit", "20", "--media", str(media), "--rate", "60"]
            full = run_collect(twin, db, *args, check=False)
            assert full.returncode == 1
            assert "is full" in full.stderr and "re-run the same command to resume" in full.stderr
            kept = media_digests(media)
            assert kept and len(kept) < 20 and not (media / ".partial").exists()

            subprocess.run(["mount", "-o", "remount,size=20m", str(media)], check=True)
            run_collect(twin, db, *args)
        assert len(media_digests(media)) == 20 and not (media / ".partial").exists()
        assert query(db, "SELECT count(*) FROM media WHERE status = 'ok'") == [(20,)]
    finally:
        subprocess.run(["umount", str(media)], check=True)


def test_unknown_targets_are_recorded_and_the_run_goes_on(twin_corpus: Path, tmp_path: Path) -> None:
    db = tmp_path / "tk.duckdb"
    with serve(twin_corpus, seed=13) as twin:
        user = twin.state.corpus.author_of[twin.state.corpus.newest_first[0]]
        args = ["--hashtag", "no-such-tag-anywhere", "--user", "nobody.here", "--user", user, "--no-media"]
        result = run_collect(twin, db, *args, "--rate", "60")
    rows = dict(
        ((k, key), (status, error))
        for k, key, status, error in query(
            db, "SELECT kind, key, status, last_error FROM crawl_targets WHERE kind IN ('hashtag', 'user')"
        )
    )
    assert rows[("hashtag", "no-such-tag-anywhere")][0] == "failed"
    assert rows[("user", "nobody.here")] == ("failed", "user_not_found")
    assert rows[("user", user)] == ("done", None)
    assert "1 done, 2 failed" in result.stderr
