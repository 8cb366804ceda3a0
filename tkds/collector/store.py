"""The DuckDB store: the tables of the design, idempotent upserts, and stats as snapshots in time.

One `Store` per run owns the connection. Every `upsert` is one transaction, so a killed run loses at
most the batch in flight, and re-running it writes the same rows again without duplicates.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from tkds.collector.records import Parsed
from tkds.errors import TkdsError

SCHEMA = """
CREATE TABLE IF NOT EXISTS videos (
    id VARCHAR PRIMARY KEY, author_id VARCHAR, music_id VARCHAR, description VARCHAR,
    create_time TIMESTAMP, duration_s DOUBLE, width INTEGER, height INTEGER, is_ad BOOLEAN,
    location VARCHAR, source VARCHAR, first_seen TIMESTAMP, last_seen TIMESTAMP, raw JSON
);
CREATE TABLE IF NOT EXISTS authors (
    id VARCHAR PRIMARY KEY, unique_id VARCHAR, sec_uid VARCHAR, nickname VARCHAR, verified BOOLEAN,
    private BOOLEAN, signature VARCHAR, raw JSON
);
CREATE TABLE IF NOT EXISTS music (
    id VARCHAR PRIMARY KEY, title VARCHAR, author_name VARCHAR, original BOOLEAN, duration_s DOUBLE,
    raw JSON
);
CREATE TABLE IF NOT EXISTS video_hashtags (
    video_id VARCHAR, tag VARCHAR, position INTEGER, PRIMARY KEY (video_id, tag)
);
CREATE TABLE IF NOT EXISTS video_stats (
    video_id VARCHAR, observed_at TIMESTAMP, plays BIGINT, likes BIGINT, comments BIGINT, shares BIGINT,
    collects BIGINT, PRIMARY KEY (video_id, observed_at)
);
CREATE TABLE IF NOT EXISTS author_stats (
    author_id VARCHAR, observed_at TIMESTAMP, followers BIGINT, following BIGINT, hearts BIGINT,
    videos BIGINT, PRIMARY KEY (author_id, observed_at)
);
CREATE TABLE IF NOT EXISTS media (
    video_id VARCHAR PRIMARY KEY, path VARCHAR, sha256 VARCHAR, bytes BIGINT, width INTEGER, height INTEGER,
    fps DOUBLE, duration_s DOUBLE, has_audio BOOLEAN, vcodec VARCHAR, acodec VARCHAR, frame_hash VARCHAR,
    duplicate_cluster VARCHAR, status VARCHAR, error VARCHAR, fetched_at TIMESTAMP
);
ALTER TABLE media ADD COLUMN IF NOT EXISTS video_stream INTEGER;
ALTER TABLE media ADD COLUMN IF NOT EXISTS audio_stream INTEGER;
CREATE TABLE IF NOT EXISTS comments (
    id VARCHAR PRIMARY KEY, video_id VARCHAR, author VARCHAR, text VARCHAR, likes BIGINT,
    create_time TIMESTAMP
);
CREATE TABLE IF NOT EXISTS takedown (video_id VARCHAR PRIMARY KEY, reason VARCHAR, added_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS crawl_targets (
    kind VARCHAR, key VARCHAR, cursor VARCHAR, has_more BOOLEAN, status VARCHAR, attempts INTEGER,
    last_error VARCHAR, updated_at TIMESTAMP, PRIMARY KEY (kind, key)
);
CREATE OR REPLACE VIEW video_stats_latest AS
    SELECT * FROM video_stats QUALIFY row_number() OVER (PARTITION BY video_id ORDER BY observed_at DESC) = 1;
CREATE OR REPLACE VIEW author_stats_latest AS
    SELECT * FROM author_stats
    QUALIFY row_number() OVER (PARTITION BY author_id ORDER BY observed_at DESC) = 1;
CREATE TABLE IF NOT EXISTS dataset_samples (
    dataset VARCHAR, video_id VARCHAR, split VARCHAR, shard VARCHAR, status VARCHAR, error VARCHAR,
    updated_at TIMESTAMP, PRIMARY KEY (dataset, video_id)
);
CREATE TABLE IF NOT EXISTS crawl_runs (
    run_id VARCHAR PRIMARY KEY, started_at TIMESTAMP, finished_at TIMESTAMP, args JSON, counts JSON
);
"""

VIDEO_COLUMNS = ("VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "TIMESTAMP", "DOUBLE", "INTEGER", "INTEGER",
                 "BOOLEAN", "VARCHAR", "VARCHAR", "TIMESTAMP", "TIMESTAMP", "JSON")  # fmt: skip
VIDEO_CONFLICT = """ON CONFLICT (id) DO UPDATE SET author_id = coalesce(excluded.author_id, author_id),
    music_id = coalesce(excluded.music_id, music_id),
    description = coalesce(excluded.description, description),
    create_time = coalesce(excluded.create_time, create_time),
    duration_s = coalesce(excluded.duration_s, duration_s),
    width = coalesce(excluded.width, width), height = coalesce(excluded.height, height),
    is_ad = coalesce(excluded.is_ad, is_ad), location = coalesce(excluded.location, location),
    last_seen = excluded.last_seen, raw = excluded.raw"""
HASHTAG_COLUMNS = ("VARCHAR", "VARCHAR", "INTEGER")
AUTHOR_COLUMNS = ("VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "BOOLEAN", "BOOLEAN", "VARCHAR", "JSON")
AUTHOR_CONFLICT = """ON CONFLICT (id) DO UPDATE SET unique_id = coalesce(excluded.unique_id, unique_id),
    sec_uid = coalesce(excluded.sec_uid, sec_uid), nickname = coalesce(excluded.nickname, nickname),
    verified = coalesce(excluded.verified, verified), private = coalesce(excluded.private, private),
    signature = coalesce(excluded.signature, signature), raw = excluded.raw"""
MUSIC_COLUMNS = ("VARCHAR", "VARCHAR", "VARCHAR", "BOOLEAN", "DOUBLE", "JSON")
MUSIC_CONFLICT = """ON CONFLICT (id) DO UPDATE SET title = coalesce(excluded.title, title),
    author_name = coalesce(excluded.author_name, author_name),
    original = coalesce(excluded.original, original),
    duration_s = coalesce(excluded.duration_s, duration_s), raw = excluded.raw"""
VIDEO_STATS_COLUMNS = ("VARCHAR", "TIMESTAMP", "BIGINT", "BIGINT", "BIGINT", "BIGINT", "BIGINT")
AUTHOR_STATS_COLUMNS = ("VARCHAR", "TIMESTAMP", "BIGINT", "BIGINT", "BIGINT", "BIGINT")
COMMENT_COLUMNS = ("VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "BIGINT", "TIMESTAMP")
COMMENT_CONFLICT = "ON CONFLICT (id) DO UPDATE SET likes = excluded.likes, text = excluded.text"


# Media failures that a retry cannot fix.
PERMANENT_MEDIA_ERRORS = ("private", "login_required", "unavailable")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _timestamp(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


def _raw(value: dict) -> str:
    return json.dumps(value, ensure_ascii=False)


class Store:
    """A DuckDB file holding everything collected; open it with `Store.open(path)`."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, path: Path) -> None:
        self.db, self.path = connection, path

    @classmethod
    def open(cls, path: str | Path) -> Store:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            connection = duckdb.connect(str(path))
            connection.execute(SCHEMA)
        except duckdb.IOException as error:
            reason = str(error).splitlines()[0]
            if "could not set lock" in reason.lower():
                raise TkdsError(f"{path} is in use by another process; stop it or use another --db") from None
            raise TkdsError(
                f"cannot open {path} as DuckDB ({reason}); restore it or use another --db"
            ) from None
        except (duckdb.Error, OSError) as error:
            reason = str(error).splitlines()[0]
            raise TkdsError(
                f"cannot open {path} as DuckDB ({reason}); restore it or use another --db"
            ) from None
        return cls(connection, path)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upsert(self, parsed: Parsed, source: str, observed_at: datetime | None = None) -> dict[str, int]:
        """Write one parse result in one transaction; returns how many videos were new and updated."""
        seen = observed_at or utcnow()
        ids = [v.id for v in parsed.videos]
        known = set()
        if ids:
            rows = self.db.execute("SELECT id FROM videos WHERE list_contains(?, id)", [ids]).fetchall()
            known = {row[0] for row in rows}
        batches = [
            ("videos", VIDEO_COLUMNS, VIDEO_CONFLICT, [
                (
                    v.id, v.author_id, v.music_id, v.description, _timestamp(v.create_time), v.duration_s,
                    v.width, v.height, v.is_ad, v.location, source, seen, seen, _raw(v.raw),
                )
                for v in parsed.videos
            ]),
            ("video_hashtags", HASHTAG_COLUMNS, "ON CONFLICT DO NOTHING", [
                (v.id, tag, position) for v in parsed.videos for position, tag in enumerate(v.hashtags)
            ]),
            ("authors", AUTHOR_COLUMNS, AUTHOR_CONFLICT, [
                (a.id, a.unique_id, a.sec_uid, a.nickname, a.verified, a.private, a.signature, _raw(a.raw))
                for a in parsed.authors
            ]),
            ("music", MUSIC_COLUMNS, MUSIC_CONFLICT, [
                (m.id, m.title, m.author_name, m.original, m.duration_s, _raw(m.raw)) for m in parsed.music
            ]),
            ("video_stats", VIDEO_STATS_COLUMNS, "ON CONFLICT DO NOTHING", [
                (st.video_id, seen, st.plays, st.likes, st.comments, st.shares, st.collects)
                for st in parsed.video_stats
            ]),
            ("author_stats", AUTHOR_STATS_COLUMNS, "ON CONFLICT DO NOTHING", [
                (s.author_id, seen, s.followers, s.following, s.hearts, s.videos) for s in parsed.author_stats
            ]),
            ("comments", COMMENT_COLUMNS, COMMENT_CONFLICT, [
                (c.id, c.video_id, c.author, c.text, c.likes, _timestamp(c.create_time))
                for c in parsed.comments
            ]),
        ]  # fmt: skip
        self.db.execute("BEGIN TRANSACTION")
        try:
            for table, types, conflict, rows in batches:
                if rows:
                    # One vectorised statement per table: unnest() of column lists, ~50x executemany's speed.
                    columns = ", ".join(f"unnest(?::{t}[])" for t in types)
                    self.db.execute(
                        f"INSERT INTO {table} SELECT * FROM (SELECT {columns}) {conflict}",
                        [list(column) for column in zip(*rows, strict=True)],
                    )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        new = len(set(ids) - known)
        return {"new": new, "updated": len(set(ids)) - new}

    def record_run(self, run_id: str, started_at: datetime, args: dict, counts: dict) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO crawl_runs VALUES (?, ?, ?, ?, ?)",
            [run_id, started_at, utcnow(), json.dumps(args, default=str), json.dumps(counts)],
        )

    # --- crawl state: targets, and one ("video", id) row per video still to fetch
    def add_targets(self, targets: list[tuple[str, str]]) -> None:
        """Register targets as pending; ones already known keep their state."""
        if not targets:
            return
        kinds, keys = (list(column) for column in zip(*targets, strict=True))
        self.db.execute(
            """INSERT INTO crawl_targets
               SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), NULL, NULL, 'pending', 0, NULL, ?
               ON CONFLICT DO NOTHING""",
            [kinds, keys, utcnow()],
        )

    def target(self, kind: str, key: str) -> dict:
        row = self.db.execute(
            "SELECT cursor, has_more, status, attempts FROM crawl_targets WHERE kind = ? AND key = ?",
            [kind, key],
        ).fetchone()
        return dict(zip(("cursor", "has_more", "status", "attempts"), row, strict=True))

    def update_target(
        self,
        kind: str,
        key: str,
        *,
        status: str,
        cursor: str | None = None,
        has_more: bool | None = None,
        error: str | None = None,
        attempted: bool = False,
    ) -> None:
        self.db.execute(
            """UPDATE crawl_targets SET status = ?, cursor = coalesce(?, cursor),
               has_more = coalesce(?, has_more),
               last_error = ?, attempts = attempts + ?, updated_at = ? WHERE kind = ? AND key = ?""",
            [status, cursor, has_more, error, int(attempted), utcnow(), kind, key],
        )

    def mark_done(self, kind: str, keys: list[str]) -> None:
        self.db.execute(
            """UPDATE crawl_targets SET status = 'done', attempts = attempts + 1, last_error = NULL,
               updated_at = ?
               WHERE kind = ? AND list_contains(?, key)""",
            [utcnow(), kind, keys],
        )

    def discovered(self, source: str) -> int:
        return self.db.execute("SELECT count(*) FROM videos WHERE source = ?", [source]).fetchone()[0]

    def pending_videos(self) -> list[tuple[str, str]]:
        """(video id, uniqueId) of every video whose page is still to fetch."""
        return self.db.execute(
            """SELECT t.key, coalesce(a.unique_id, '_') FROM crawl_targets t
               LEFT JOIN videos v ON v.id = t.key LEFT JOIN authors a ON a.id = v.author_id
               WHERE t.kind = 'video' AND t.status = 'pending' ORDER BY t.key"""
        ).fetchall()

    def known_videos(self) -> list[tuple[str, str]]:
        return self.db.execute(
            """SELECT v.id, coalesce(a.unique_id, '_') FROM videos v LEFT JOIN authors a ON a.id = v.author_id
               WHERE v.id NOT IN (SELECT video_id FROM takedown) ORDER BY v.id"""
        ).fetchall()

    def videos_needing_media(self, max_attempts: int) -> list[tuple[str, str]]:
        """Fetched videos without a good file, short of `max_attempts` failed tries and not gone for good."""
        return self.db.execute(
            """SELECT t.key, coalesce(a.unique_id, '_') FROM crawl_targets t
               JOIN videos v ON v.id = t.key LEFT JOIN authors a ON a.id = v.author_id
               LEFT JOIN media m ON m.video_id = t.key
               LEFT JOIN crawl_targets mt ON mt.kind = 'media' AND mt.key = t.key
               WHERE t.kind = 'video' AND t.status = 'done' AND coalesce(m.status, '') <> 'ok'
                 AND coalesce(mt.attempts, 0) < ? AND NOT list_contains(?, coalesce(m.error, ''))
                 AND t.key NOT IN (SELECT video_id FROM takedown)
               ORDER BY t.key""",
            [max_attempts, list(PERMANENT_MEDIA_ERRORS)],
        ).fetchall()

    def record_media(self, result) -> None:
        """Store a `tkds.collector.media.MediaResult`, counting failed attempts in crawl_targets."""
        self.db.execute(
            """INSERT OR REPLACE INTO media (video_id, path, sha256, bytes, width, height, fps, duration_s,
                   has_audio, vcodec, acodec, status, error, fetched_at, video_stream, audio_stream)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [
                result.video_id, result.path, result.sha256, result.bytes, result.width, result.height,
                result.fps, result.duration_s, result.has_audio, result.vcodec, result.acodec,
                result.status, result.error, utcnow(), result.video_stream, result.audio_stream,
            ],
        )  # fmt: skip
        self.add_targets([("media", result.video_id)])
        self.update_target("media", result.video_id, status=result.status, error=result.error, attempted=True)

    def likes_per_follower_by_tag(self, limit: int = 10) -> list[tuple[str, int, float]]:
        """(tag, videos, mean likes per follower) from the latest snapshots, most-used tags first."""
        return self.db.execute(
            """SELECT h.tag, count(*) AS videos, avg(s.likes / nullif(a.followers, 0)) AS likes_per_follower
               FROM video_hashtags h JOIN videos v ON v.id = h.video_id
               JOIN video_stats_latest s ON s.video_id = v.id
               JOIN author_stats_latest a ON a.author_id = v.author_id
               GROUP BY h.tag ORDER BY videos DESC, h.tag LIMIT ?""",
            [limit],
        ).fetchall()

    def count(self, table: str) -> int:
        return self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
