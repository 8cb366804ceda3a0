"""`tkds collect --workers N`: worker processes, their parts merged into one DuckDB file, through the twin."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from tkds.collector.store import Store, _tkds_shape
from tkds.collector.workers import (
    MERGED,
    NOT_WRITTEN_BY_WORKERS,
    REPLACED,
    Part,
    merge_leftover_parts,
    merge_part,
    partition_of,
    parts_folder,
    seed_part,
)
from tkds.tiktok import VIDEO_CDN_HOST
from tkds.twin import serve

TKDS = [sys.executable, "-m", "tkds"]
TWIN_SEED = 20  # the twin's comments come from its seed: every twin here serves the same
# The rows a collection stores, but for timestamps, source, raw JSON and media paths. Authors appear in
# both fetch parts, so they get a stats snapshot from each: their latest snapshot is compared.
SAME_ROWS = (
    """SELECT id, author_id, music_id, description, create_time, duration_s, width, height, is_ad,
              location, kind FROM videos ORDER BY id""",
    "SELECT id, unique_id, sec_uid, nickname, verified, private, signature FROM authors ORDER BY id",
    "SELECT id, title, author_name, original, duration_s FROM music ORDER BY id",
    "SELECT video_id, tag, position FROM video_hashtags ORDER BY ALL",
    """SELECT video_id, plays, likes, comments, shares, collects, rounded, count(*) FROM video_stats
       GROUP BY ALL ORDER BY ALL""",
    """SELECT author_id, followers, following, hearts, videos, rounded FROM author_stats_latest
       ORDER BY ALL""",
    "SELECT video_id, status, sha256, bytes, width, height, has_audio FROM media ORDER BY ALL",
    "SELECT kind, key, status, has_more FROM crawl_targets WHERE kind <> 'media' ORDER BY ALL",
    "SELECT id, video_id, author, text, likes, create_time FROM comments ORDER BY id",
)


def collect_command(twin, db: Path, media: Path, users: list[str], workers: int) -> list[str]:
    command = [*TKDS, "collect", "--db", str(db), "--media", str(media), "--proxy", twin.proxy_url]
    command += ["--ca-cert", str(twin.ca_path), "--limit", "12", "--rate", "10", "--detail", "always"]
    command += ["--comments", "2"]
    for user in users:
        command += ["--user", user]
    return [*command, "--workers", str(workers)]


def run(command: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def rows(db: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(db), read_only=True) as connection:
        return {sql: connection.execute(sql).fetchall() for sql in SAME_ROWS}


def busiest_users(twin) -> list[str]:
    """Two users with 12 videos or more: their listings share no video, so each run lists the same."""
    by_author = twin.state.corpus.by_author
    return sorted(by_author, key=lambda user: (-len(by_author[user]), user))[:2]


def leftovers(db: Path, media: Path) -> list[Path]:
    return [parts_folder(db), *media.glob(".partial*")]


def worker_pid(part: Path) -> int | None:
    """The pid of the worker process running `part`, from its command line."""
    for entry in Path("/proc").iterdir():
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"tkds.collector.workers" in arguments and str(part).encode() in arguments:
            return int(entry.name)
    return None


@pytest.fixture(scope="module")
def one_worker(twin_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The collection of one worker (the default): its DuckDB file and media folder."""
    out = tmp_path_factory.mktemp("one")
    with serve(twin_corpus, seed=TWIN_SEED, speed=0) as twin:
        run(collect_command(twin, out / "one.duckdb", out / "media", busiest_users(twin), 1))
    return out / "one.duckdb", out / "media"


@pytest.mark.slow
def test_two_workers_store_the_same_rows_as_one(
    twin_corpus: Path, one_worker: tuple[Path, Path], tmp_path: Path
) -> None:
    # The twin's clock stands still, so counts do not grow between runs.
    with serve(twin_corpus, seed=TWIN_SEED, speed=0) as twin:
        result = run(collect_command(twin, tmp_path / "two.duckdb", tmp_path / "two", busiest_users(twin), 2))
        served = len(twin.state.requests)  # far below the log's 100,000 entries
    two = rows(tmp_path / "two.duckdb")
    assert two == rows(one_worker[0])
    videos = [row[0] for row in two[SAME_ROWS[0]]]
    assert len(videos) == 24 and {partition_of(v, 2) for v in videos} == {0, 1}  # both fetch parts worked
    assert all(row[1] == "ok" for row in two[SAME_ROWS[6]]) and len(two[SAME_ROWS[8]]) == 48
    assert "collect: fetch (2 workers)" in result.stderr and "24 ok" in result.stderr
    with duckdb.connect(str(tmp_path / "two.duckdb"), read_only=True) as connection:
        counts = connection.execute("SELECT counts->>'requests_total' FROM crawl_runs").fetchone()[0]
    assert int(counts) == served  # the workers' requests, added up: every one the twin answered
    assert not any(path.exists() for path in leftovers(tmp_path / "two.duckdb", tmp_path / "two"))


@pytest.mark.slow
def test_a_killed_worker_loses_only_its_work_in_flight(
    twin_corpus: Path, one_worker: tuple[Path, Path], tmp_path: Path
) -> None:
    db, media = tmp_path / "killed.duckdb", tmp_path / "killed"
    part = parts_folder(db) / "fetch-1-of-2.duckdb"
    with serve(twin_corpus, seed=TWIN_SEED, speed=0) as twin:
        users = busiest_users(twin)
        command = collect_command(twin, db, media, users, 2)
        coordinator = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
        deadline = time.monotonic() + 300
        # Killed in its media stage: its pages were stored as that began, and most files are still to come
        # (its share of --rate lets at most 5 a second through).
        while (pid := worker_pid(part)) is None or (
            sum(partition_of(mp4.stem, 2) == 1 for mp4 in media.glob("*.mp4")) < 3
        ):
            assert coordinator.poll() is None, "collect finished before a worker could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        _, stderr = coordinator.communicate(timeout=600)
        assert coordinator.returncode == 1, stderr
        assert "worker fetch-1-of-2 died (signal 9); re-run the same command to resume" in stderr
        with duckdb.connect(str(db), read_only=True) as connection:
            pages = connection.execute(
                "SELECT count(*) FROM crawl_targets WHERE kind = 'video' AND status = 'done'"
            ).fetchone()[0]
            stored = connection.execute("SELECT count(*) FROM media WHERE status = 'ok'").fetchone()[0]
        assert pages == 24 and stored < 24  # the dead worker's pages were merged; some media is owed
        assert not any(path.exists() for path in leftovers(db, media))

        before = len(twin.state.requests)  # far below the log's 100,000 entries
        run(command)  # the same command resumes, fetching only what is missing
        downloads = [host for _, host, _ in list(twin.state.requests)[before:] if host == VIDEO_CDN_HOST]
        assert len(downloads) == 24 - stored
    assert rows(db) == rows(one_worker[0])
    mp4s = {p.name: p.read_bytes() for p in media.glob("*.mp4")}
    assert mp4s == {p.name: p.read_bytes() for p in one_worker[1].glob("*.mp4")}
    assert not any(path.exists() for path in leftovers(db, media))


def test_a_part_merges_only_what_its_worker_changed(synth_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "tk.duckdb"
    shutil.copyfile(synth_db, db)
    folder = parts_folder(db)
    folder.mkdir()
    with Store.open(db) as store:
        videos = [row[0] for row in store.db.execute("SELECT id FROM videos ORDER BY id").fetchall()]
        author = store.db.execute("SELECT author_id FROM videos WHERE id = ?", [videos[0]]).fetchone()[0]
        together = [v for v in videos if store.db.execute(  # videos of that author
            "SELECT author_id = ? FROM videos WHERE id = ?", [author, v]).fetchone()[0]]  # fmt: skip
        stale, fresh = folder / "stale.duckdb", folder / "fresh.duckdb"
        seed_part(store, Part("stale", "fetch", video_ids=together), stale)
        seed_part(store, Part("fresh", "fetch", video_ids=together), fresh)
    with duckdb.connect(str(fresh)) as worker:  # what a worker writes: a newer author, a media row
        worker.execute("UPDATE authors SET nickname = 'renamed' WHERE id = ?", [author])
        worker.execute("UPDATE media SET status = 'failed', error = 'gone' WHERE video_id = ?", [videos[0]])
    shutil.copyfile(fresh, tmp_path / "fresh-again.duckdb")

    def merged_state(store: Store) -> tuple:
        return (
            store.db.execute("SELECT nickname FROM authors WHERE id = ?", [author]).fetchone()[0],
            store.db.execute("SELECT status, error FROM media WHERE video_id = ?", [videos[0]]).fetchone(),
            store.count("videos"),
            store.count("media"),
        )

    with Store.open(db) as store:
        merge_part(store, fresh)
        merge_part(store, stale)  # its copy of the author is the seed's: it does not undo the rename
        assert not fresh.exists() and not stale.exists()
        assert merged_state(store) == ("renamed", ("failed", "gone"), len(videos), len(videos))
        # A killed coordinator's part, left with its seed: merged by the next run, here once more.
        shutil.copyfile(tmp_path / "fresh-again.duckdb", fresh)
        shutil.copyfile(tmp_path / "fresh-again.duckdb", folder / "fresh.seed.duckdb")
        assert merge_leftover_parts(store) == 1 and not folder.exists()
        assert merged_state(store) == ("renamed", ("failed", "gone"), len(videos), len(videos))
    # Every table of the schema is merged, or is one that workers never write.
    merged = {table for table, _ in MERGED} | set(REPLACED) | {"media_images"}
    assert set(_tkds_shape()[0]) == merged | set(NOT_WRITTEN_BY_WORKERS)


@pytest.mark.parametrize("value", ["0", "-2", "33", "two"])
def test_bad_worker_counts_are_one_line_errors(value: str, tmp_path: Path) -> None:
    db = tmp_path / "tk.duckdb"
    result = subprocess.run(
        [*TKDS, "collect", "--db", str(db), "--hashtag", "fyp", "--no-media", "--workers", value],
        capture_output=True,
        text=True,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode in (1, 2) and len(lines) == 1 and "--workers" in lines[0], result.stderr
    assert "Traceback" not in result.stderr and not db.exists()
