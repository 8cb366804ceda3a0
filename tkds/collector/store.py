"""The DuckDB store: the tables of the design, idempotent upserts, and stats as snapshots in time.

One `Store` per run owns the connection. Every `upsert` is one transaction, so a killed run loses at
most the batch in flight, and re-running it writes the same rows again without duplicates.

The store trusts neither its input nor its file. `upsert` is the last gate for ids (whatever parser or
import format made the records): a record with an invalid id is refused and counted, a bad username
is stored as NULL. The helpers that hand ids to callers building paths and URLs filter them in SQL.
`Store.open` refuses, before writing anything, a DuckDB file holding tables or views that are not
tkds's, or tkds tables of another shape; a full disk under the file is a one-line `TkdsError`.
"""

from __future__ import annotations

import errno
import json
import math
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import duckdb

from tkds import ids
from tkds.collector.records import Parsed, Refusal, storable
from tkds.collector.values import utc_datetime
from tkds.errors import TkdsError
from tkds.tiktok import is_tiktok_url

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
ALTER TABLE videos ADD COLUMN IF NOT EXISTS kind VARCHAR;
ALTER TABLE video_stats ADD COLUMN IF NOT EXISTS rounded BOOLEAN;
ALTER TABLE author_stats ADD COLUMN IF NOT EXISTS rounded BOOLEAN;
CREATE TABLE IF NOT EXISTS video_images (
    video_id VARCHAR, position INTEGER, url VARCHAR, width INTEGER, height INTEGER,
    PRIMARY KEY (video_id, position)
);
CREATE TABLE IF NOT EXISTS media_images (
    video_id VARCHAR, position INTEGER, path VARCHAR, sha256 VARCHAR, bytes BIGINT, width INTEGER,
    height INTEGER, PRIMARY KEY (video_id, position)
);
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
                 "BOOLEAN", "VARCHAR", "VARCHAR", "TIMESTAMP", "TIMESTAMP", "JSON", "VARCHAR")  # fmt: skip
VIDEO_CONFLICT = """ON CONFLICT (id) DO UPDATE SET author_id = coalesce(excluded.author_id, author_id),
    music_id = coalesce(excluded.music_id, music_id),
    description = coalesce(excluded.description, description),
    create_time = coalesce(excluded.create_time, create_time),
    duration_s = coalesce(excluded.duration_s, duration_s),
    width = coalesce(excluded.width, width), height = coalesce(excluded.height, height),
    is_ad = coalesce(excluded.is_ad, is_ad), location = coalesce(excluded.location, location),
    last_seen = excluded.last_seen, raw = excluded.raw, kind = coalesce(excluded.kind, kind)"""
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
VIDEO_STATS_COLUMNS = ("VARCHAR", "TIMESTAMP", "BIGINT", "BIGINT", "BIGINT", "BIGINT", "BIGINT", "BOOLEAN")
AUTHOR_STATS_COLUMNS = ("VARCHAR", "TIMESTAMP", "BIGINT", "BIGINT", "BIGINT", "BIGINT", "BOOLEAN")
# For one observation, an exact snapshot replaces a rounded one, and never the other way round.
VIDEO_STATS_CONFLICT = """ON CONFLICT DO UPDATE SET plays = excluded.plays, likes = excluded.likes,
    comments = excluded.comments, shares = excluded.shares, collects = excluded.collects,
    rounded = excluded.rounded WHERE coalesce(video_stats.rounded, false) AND NOT excluded.rounded"""
AUTHOR_STATS_CONFLICT = """ON CONFLICT DO UPDATE SET followers = excluded.followers,
    following = excluded.following, hearts = excluded.hearts, videos = excluded.videos,
    rounded = excluded.rounded WHERE coalesce(author_stats.rounded, false) AND NOT excluded.rounded"""
IMAGE_COLUMNS = ("VARCHAR", "INTEGER", "VARCHAR", "INTEGER", "INTEGER")
IMAGE_CONFLICT = """ON CONFLICT DO UPDATE SET url = excluded.url, width = excluded.width,
    height = excluded.height"""
COMMENT_COLUMNS = ("VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "BIGINT", "TIMESTAMP")
COMMENT_CONFLICT = "ON CONFLICT (id) DO UPDATE SET likes = excluded.likes, text = excluded.text"


# Media failures that a retry cannot fix.
PERMANENT_MEDIA_ERRORS = ("private", "login_required", "unavailable")

# Columns that SCHEMA adds to older tkds files by ALTER: a table lacking only these is still tkds's.
ADDED_COLUMNS = frozenset(re.findall(r"ALTER TABLE (\w+) ADD COLUMN IF NOT EXISTS (\w+)", SCHEMA))
TKDS_VIEWS = frozenset(re.findall(r"CREATE OR REPLACE VIEW (\w+)", SCHEMA))
# The ids' grammar in DuckDB's regexp_full_match (RE2 reads these patterns as Python does).
USERNAME_SQL = (
    f"CASE WHEN regexp_full_match(a.unique_id, '{ids.USERNAME.pattern}') THEN a.unique_id ELSE '_' END"
)
FULL_DISK = re.compile(r"no space left on device|disk is full|not enough space", re.I)
DISK_FULL = "is full; free space, then re-run the same command to resume"
REFUSAL_EXAMPLES = 3  # refusal details an upsert returns, for the summary
# DuckDB's cache may otherwise take 80 % of RAM: a 1 GB import peaked at 2.4 GB, and at 0.7 GB with this.
# Past it DuckDB spills to DB.tmp/, so large selections still run.
MEMORY_LIMIT = "512MB"


def valid_id_sql(column: str) -> str:
    """SQL that is true where `column` holds a valid digit-string id."""
    return f"regexp_full_match({column}, '{ids.DIGIT_ID.pattern}')"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _finite(value: Any) -> Any:
    """`value` with NaN and ±Infinity (which Python's json reads, and JSON has not) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _raw(value: dict) -> str:
    """JSON text that DuckDB accepts: no NaN or Infinity, and lone surrogates (from \\ud800) as U+FFFD."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(value), ensure_ascii=False, allow_nan=False)
    return storable(text)


def _valid(value: object, kind: str, refused: list[Refusal]) -> bool:
    """Whether `value` is a valid id of `kind`; if not, its `Refusal` is appended to `refused`."""
    try:
        ids.check_id(value, kind)
    except ids.InvalidId as error:
        refused.append(Refusal(f"{kind} id", str(error)))
        return False
    return True


def _admitted_raw(record: Any, kind: str, refused: list[Refusal]) -> str | None:
    """The raw JSON of a record with a valid id, or None (and its `Refusal`)."""
    if not _valid(record.id, kind, refused):
        return None
    try:
        return _raw(record.raw)
    except (RecursionError, ValueError):
        refused.append(Refusal(f"{kind} raw", f"{kind} {record.id}: its JSON is nested too deeply to store"))
        return None


def _username(value: str | None, refused: list[Refusal]) -> str | None:
    if value is None or ids.is_valid_username(value):
        return value
    refused.append(Refusal("username", f"{ids.preview(value)}: not a TikTok username; stored as NULL"))
    return None


def _write_failure(path: Path, error: BaseException) -> TkdsError | None:
    """A one-line error for a full disk or a failed write under `path`; None for other errors."""
    reason = (str(error).splitlines() or [type(error).__name__])[0]
    if FULL_DISK.search(reason) or getattr(error, "errno", None) == errno.ENOSPC:
        return TkdsError(f"the disk under --db {path} {DISK_FULL}")
    if isinstance(error, duckdb.OutOfMemoryException):
        # Its indexes stay in memory: about 40 MB per 100,000 videos, so past a million or so videos
        # they fill the cap on their own.
        return TkdsError(
            f"--db {path} needs more than DuckDB's {MEMORY_LIMIT} memory cap ({reason[:120]}); "
            "collect into another --db (one per million videos), then re-run the same command"
        )
    if isinstance(error, duckdb.IOException | OSError) or "could not write" in reason.lower():
        return TkdsError(f"cannot write --db {path} ({reason[:200]}); fix that, then re-run the same command")
    return None


def _shape(connection: duckdb.DuckDBPyConnection) -> tuple[dict[str, tuple], dict[str, tuple], set[str]]:
    """The file's tables as {name: ((column, type), ...)}, their primary keys, and its view names."""
    tables: dict[str, list] = {}
    for schema, table, column, data_type in connection.execute(
        """SELECT t.schema_name, t.table_name, c.column_name, c.data_type FROM duckdb_tables() t
           JOIN duckdb_columns() c ON c.table_oid = t.table_oid
           WHERE t.database_name = current_database() AND NOT t.internal AND NOT t.temporary
           ORDER BY t.schema_name, t.table_name, c.column_index"""
    ).fetchall():
        tables.setdefault(table if schema == "main" else f"{schema}.{table}", []).append((column, data_type))
    keys = {
        table if schema == "main" else f"{schema}.{table}": tuple(columns)
        for schema, table, columns in connection.execute(
            """SELECT schema_name, table_name, constraint_column_names FROM duckdb_constraints()
               WHERE database_name = current_database() AND constraint_type = 'PRIMARY KEY'"""
        ).fetchall()
    }
    views = {
        view if schema == "main" else f"{schema}.{view}"
        for schema, view in connection.execute(
            """SELECT schema_name, view_name FROM duckdb_views()
               WHERE database_name = current_database() AND NOT internal AND NOT temporary"""
        ).fetchall()
    }
    return {name: tuple(columns) for name, columns in tables.items()}, keys, views


@cache
def _tkds_shape() -> tuple[dict[str, tuple], dict[str, tuple]]:
    """The tables and keys SCHEMA makes, read back from an empty in-memory database."""
    with duckdb.connect(":memory:") as connection:
        connection.execute(SCHEMA)
        tables, keys, _ = _shape(connection)
    return tables, keys


def _foreign_objects(connection: duckdb.DuckDBPyConnection) -> list[str]:
    """What in an open DuckDB file is not tkds's: other tables or views, or tkds tables of another shape."""
    tkds_tables, tkds_keys = _tkds_shape()
    tables, keys, views = _shape(connection)
    foreign = []
    for name, columns in tables.items():
        expected = tkds_tables.get(name)
        missing = () if expected is None else expected[len(columns) :]
        if expected is None:
            foreign.append(f"table {ids.preview(name)}")
        elif (
            columns != expected[: len(columns)]
            or any((name, column) not in ADDED_COLUMNS for column, _ in missing)
            or keys.get(name) != tkds_keys.get(name)
        ):
            foreign.append(f"table {name} with other columns")
    return foreign + [f"view {ids.preview(name)}" for name in sorted(views - TKDS_VIEWS)]


def _probe(path: Path) -> list[str] | None:
    """What in an existing file is not tkds's, read before anything is written to it.

    Read-only, since even opening a file for writing checkpoints a WAL another application left; None
    when this process has the file open already (DuckDB allows no second, read-only instance).
    """
    if not path.exists():
        return []
    try:
        with duckdb.connect(str(path), read_only=True) as probe:
            return _foreign_objects(probe)
    except duckdb.ConnectionException as error:
        if "different configuration" in str(error):
            return None
        raise


def _foreign_file(path: Path, foreign: list[str]) -> TkdsError:
    more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
    return TkdsError(
        f"--db {path} is not a tkds database (it holds {', '.join(foreign[:3])}{more}); "
        "it was left untouched: pass a new file or a tkds database as --db"
    )


class Store:
    """A DuckDB file holding everything collected; open it with `Store.open(path)`."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, path: Path) -> None:
        self.db, self.path = connection, path
        self._transactions = 0  # how deep in `transaction()` blocks the caller is

    @classmethod
    def open(cls, path: str | Path, create: bool = True) -> Store:
        """Open (or, with `create`, make) the store; a missing file without `create` is a `TkdsError`."""
        path = Path(path)
        if not create and not path.is_file():
            raise TkdsError(f"--db {path} does not exist; check the path, or collect or import into it first")
        created = not path.exists()
        try:
            return cls._open(path)
        except TkdsError as error:
            if created and DISK_FULL in str(error):  # a half-made file would not open on the re-run
                for made in (path, path.with_name(path.name + ".wal")):
                    with suppress(OSError):
                        made.unlink()
            raise

    @classmethod
    def _open(cls, path: Path) -> Store:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            foreign = _probe(path)
            if foreign:
                raise _foreign_file(path, foreign)
            connection = duckdb.connect(str(path))
            if foreign is None and (foreign := _foreign_objects(connection)):
                connection.close()  # this process had it open already: looked at on that instance
                raise _foreign_file(path, foreign)
            connection.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
            connection.execute(SCHEMA)
        except duckdb.IOException as error:
            reason = str(error).splitlines()[0]
            if "could not set lock" in reason.lower():
                raise TkdsError(f"{path} is in use by another process; stop it or use another --db") from None
            if FULL_DISK.search(reason):
                raise _write_failure(path, error) from None
            raise TkdsError(
                f"cannot open {path} as DuckDB ({reason}); restore it or use another --db"
            ) from None
        except (duckdb.Error, OSError) as error:
            reason = str(error).splitlines()[0]
            if FULL_DISK.search(reason) or getattr(error, "errno", None) == errno.ENOSPC:
                raise _write_failure(path, error) from None
            raise TkdsError(
                f"cannot open {path} as DuckDB ({reason}); restore it or use another --db"
            ) from None
        return cls(connection, path)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Writes under this: a full disk (or another failed write) is a one-line `TkdsError`."""
        try:
            yield
        except (duckdb.Error, OSError) as error:
            failure = _write_failure(self.path, error)
            if failure is None:
                raise
            raise failure from None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction for every write under it (upserts and crawl state alike): a killed run
        keeps all of them or none. Each commit costs a WAL sync and a few ms of DuckDB, so callers
        group a batch's writes; a block inside another joins the outer one."""
        if self._transactions:
            self._transactions += 1
            try:
                yield
            finally:
                self._transactions -= 1
            return
        with self.writing():
            self.db.execute("BEGIN TRANSACTION")
            self._transactions = 1
            try:
                yield
                self.db.execute("COMMIT")
            except BaseException:
                with suppress(duckdb.Error):  # a failed COMMIT has already ended the transaction
                    self.db.execute("ROLLBACK")
                raise
            finally:
                self._transactions = 0

    def close(self) -> None:
        with self.writing():  # closing checkpoints the WAL into the file
            self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upsert(self, parsed: Parsed, source: str, observed_at: datetime | None = None) -> dict[str, Any]:
        """Write one parse result in one transaction, refusing records whose ids are invalid.

        A video with a bad id is refused with its stats and tags; an author or sound with a bad id is
        refused and its videos keep NULL there; a comment needs a good id and video id; a bad username
        is stored as NULL. A snapshot's own `observed_at` (a source's scrape time) wins over
        `observed_at`; for one observation time an exact snapshot replaces a rounded one, never the
        reverse. Returns how many videos were "new" and "updated", and how many records (or
        usernames) were "refused" (the parser's refusals included), with "refused_reasons" (reason ->
        count) and up to REFUSAL_EXAMPLES "refused_examples".
        """
        seen = observed_at or utcnow()
        refused: list[Refusal] = list(parsed.refused)
        videos = [
            (
                v.id, v.author_id if v.author_id is None or _valid(v.author_id, "author", refused) else None,
                v.music_id if v.music_id is None or _valid(v.music_id, "music", refused) else None,
                v.description, utc_datetime(v.create_time), v.duration_s, v.width, v.height, v.is_ad,
                v.location, source, seen, seen, raw, v.kind,
            )
            for v in parsed.videos
            if (raw := _admitted_raw(v, "video", refused)) is not None
        ]  # fmt: skip
        kept = {row[0] for row in videos}
        hashtags = [
            (v.id, tag, position)
            for v in parsed.videos
            if v.id in kept
            for position, tag in enumerate(v.hashtags)
        ]
        images = [
            (v.id, position, image.url, image.width, image.height)
            for v in parsed.videos
            if v.id in kept
            for position, image in enumerate(v.images)
        ]
        refused_videos = {v.id for v in parsed.videos} - kept
        video_stats = [
            (
                st.video_id,
                st.observed_at or seen,
                st.plays,
                st.likes,
                st.comments,
                st.shares,
                st.collects,
                st.rounded,
            )
            for st in parsed.video_stats
            if st.video_id not in refused_videos and _valid(st.video_id, "video", refused)
        ]
        authors = [
            (
                a.id,
                _username(a.unique_id, refused),
                a.sec_uid,
                a.nickname,
                a.verified,
                a.private,
                a.signature,
                raw,
            )
            for a in parsed.authors
            if (raw := _admitted_raw(a, "author", refused)) is not None
        ]
        author_stats = [
            (s.author_id, s.observed_at or seen, s.followers, s.following, s.hearts, s.videos, s.rounded)
            for s in parsed.author_stats
            if _valid(s.author_id, "author", refused)
        ]
        music = [
            (m.id, m.title, m.author_name, m.original, m.duration_s, raw)
            for m in parsed.music
            if (raw := _admitted_raw(m, "music", refused)) is not None
        ]
        comments = [
            (c.id, c.video_id, _username(c.author, refused), c.text, c.likes, utc_datetime(c.create_time))
            for c in parsed.comments
            if _valid(c.id, "comment", refused) and _valid(c.video_id, "video", refused)
        ]
        batches = [
            ("videos", VIDEO_COLUMNS, VIDEO_CONFLICT, videos),
            ("video_hashtags", HASHTAG_COLUMNS, "ON CONFLICT DO NOTHING", hashtags),
            ("authors", AUTHOR_COLUMNS, AUTHOR_CONFLICT, authors),
            ("music", MUSIC_COLUMNS, MUSIC_CONFLICT, music),
            ("video_images", IMAGE_COLUMNS, IMAGE_CONFLICT, images),
            ("video_stats", VIDEO_STATS_COLUMNS, VIDEO_STATS_CONFLICT, video_stats),
            ("author_stats", AUTHOR_STATS_COLUMNS, AUTHOR_STATS_CONFLICT, author_stats),
            ("comments", COMMENT_COLUMNS, COMMENT_CONFLICT, comments),
        ]
        with self.transaction():
            known = set()
            if kept:
                rows = self.db.execute("SELECT id FROM videos WHERE list_contains(?, id)", [list(kept)])
                known = {row[0] for row in rows.fetchall()}
            for table, types, conflict, rows in batches:
                if rows:
                    # One vectorised statement per table: unnest() of column lists, ~50x executemany.
                    columns = ", ".join(f"unnest(?::{t}[])" for t in types)
                    self.db.execute(
                        f"INSERT INTO {table} SELECT * FROM (SELECT {columns}) {conflict}",
                        [list(column) for column in zip(*rows, strict=True)],
                    )
        new = len(kept - known)
        refused = list(dict.fromkeys(refused))
        return {
            "new": new,
            "updated": len(kept) - new,
            "refused": len(refused),
            "refused_reasons": dict(Counter(r.reason for r in refused)),
            "refused_examples": [r.detail for r in refused[:REFUSAL_EXAMPLES]],
        }

    def record_run(self, run_id: str, started_at: datetime, args: dict, counts: dict) -> None:
        with self.writing():
            self.db.execute(
                "INSERT OR REPLACE INTO crawl_runs VALUES (?, ?, ?, ?, ?)",
                [run_id, started_at, utcnow(), json.dumps(args, default=str), json.dumps(counts)],
            )

    # --- crawl state: targets, and one ("video", id) row per video still to fetch
    def add_targets(self, targets: list[tuple[str, str]]) -> int:
        """Register targets as pending; ones already known keep their state.

        Video and media targets need a valid video id: returns how many were refused for lacking one.
        """
        admitted = [(k, key) for k, key in targets if k not in ("video", "media") or ids.is_valid_id(key)]
        if admitted:
            kinds, keys = (list(column) for column in zip(*admitted, strict=True))
            with self.writing():
                self.db.execute(
                    """INSERT INTO crawl_targets
                       SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), NULL, NULL, 'pending', 0, NULL, ?
                       ON CONFLICT DO NOTHING""",
                    [kinds, keys, utcnow()],
                )
        return len(targets) - len(admitted)

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
        with self.writing():
            self.db.execute(
                """UPDATE crawl_targets SET status = ?, cursor = coalesce(?, cursor),
                   has_more = coalesce(?, has_more),
                   last_error = ?, attempts = attempts + ?, updated_at = ? WHERE kind = ? AND key = ?""",
                [status, cursor, has_more, error, int(attempted), utcnow(), kind, key],
            )

    def mark_done(self, kind: str, keys: list[str]) -> None:
        with self.writing():
            self.db.execute(
                """UPDATE crawl_targets SET status = 'done', attempts = attempts + 1, last_error = NULL,
                   updated_at = ?
                   WHERE kind = ? AND list_contains(?, key)""",
                [utcnow(), kind, keys],
            )

    def add_listed_videos(self, pending: list[str], complete: list[str]) -> int:
        """Register the videos a listing gave as targets, in one statement: `pending` ones still need
        their page; `complete` ones (their item held every field) are marked done, new or pending,
        as their page is not needed. Known targets otherwise keep their state. Returns how many of
        `complete` were marked done. Invalid ids are skipped."""
        done = set(filter(ids.is_valid_id, complete))
        keys = sorted(done) + sorted(set(filter(ids.is_valid_id, pending)) - done)
        if not keys:
            return 0
        statuses = ["done"] * len(done) + ["pending"] * (len(keys) - len(done))
        with self.writing():
            # Each key's conflict is answered by the index; an UPDATE ... WHERE key IN (...) scans
            # every target instead, 9 ms a page at 290,000 videos.
            changed = self.db.execute(
                """INSERT INTO crawl_targets
                   SELECT 'video', key, NULL, NULL, status, CASE status WHEN 'done' THEN 1 ELSE 0 END,
                          NULL, ?
                   FROM (SELECT unnest(?::VARCHAR[]) AS key, unnest(?::VARCHAR[]) AS status)
                   ON CONFLICT DO UPDATE SET status = 'done', attempts = crawl_targets.attempts + 1,
                       last_error = NULL, updated_at = excluded.updated_at
                   WHERE crawl_targets.status = 'pending' AND excluded.status = 'done'
                   RETURNING status""",
                [utcnow(), keys, statuses],
            ).fetchall()
        return sum(status == "done" for (status,) in changed)

    def discovered(self, source: str) -> int:
        return self.db.execute("SELECT count(*) FROM videos WHERE source = ?", [source]).fetchone()[0]

    # The next three hand ids to callers that build paths and URLs: rows whose id is not a digit string
    # (a crafted or foreign file) are never returned, and a bad uniqueId reads as '_'.
    def pending_videos(self) -> list[tuple[str, str]]:
        """(video id, uniqueId) of every video whose page is still to fetch."""
        return self.db.execute(
            f"""SELECT t.key, {USERNAME_SQL} FROM crawl_targets t
               LEFT JOIN videos v ON v.id = t.key LEFT JOIN authors a ON a.id = v.author_id
               WHERE t.kind = 'video' AND t.status = 'pending' AND {valid_id_sql("t.key")}
               ORDER BY t.key"""
        ).fetchall()

    def pending_among(self, video_ids: list[str]) -> set[str]:
        """Which of `video_ids` have their page still to fetch."""
        rows = self.db.execute(
            """SELECT key FROM crawl_targets WHERE kind = 'video' AND status = 'pending'
               AND list_contains(?, key)""",
            [video_ids],
        ).fetchall()
        return {row[0] for row in rows}

    def play_urls(self, video_ids: list[str]) -> dict[str, str]:
        """The play URL in each video's latest raw item (the freshest the collector holds), where it is
        an https URL on a TikTok host."""
        rows = self.db.execute(
            """SELECT id, json_extract_string(raw, '$.video.playAddr') FROM videos
               WHERE list_contains(?, id) AND json_type(raw, '$.video.playAddr') = 'VARCHAR'""",
            [video_ids],
        ).fetchall()
        return {video_id: url for video_id, url in rows if is_tiktok_url(url)}

    def known_videos(self) -> list[tuple[str, str]]:
        return self.db.execute(
            f"""SELECT v.id, {USERNAME_SQL} FROM videos v LEFT JOIN authors a ON a.id = v.author_id
               WHERE v.id NOT IN (SELECT video_id FROM takedown) AND {valid_id_sql("v.id")}
               ORDER BY v.id"""
        ).fetchall()

    def videos_needing_media(self, max_attempts: int) -> list[tuple[str, str]]:
        """Fetched videos without a good file, short of `max_attempts` failed tries and not gone for good."""
        return self.db.execute(
            f"""SELECT t.key, {USERNAME_SQL} FROM crawl_targets t
               JOIN videos v ON v.id = t.key LEFT JOIN authors a ON a.id = v.author_id
               LEFT JOIN media m ON m.video_id = t.key
               LEFT JOIN crawl_targets mt ON mt.kind = 'media' AND mt.key = t.key
               WHERE t.kind = 'video' AND t.status = 'done' AND coalesce(m.status, '') <> 'ok'
                 AND coalesce(mt.attempts, 0) < ? AND NOT list_contains(?, coalesce(m.error, ''))
                 AND t.key NOT IN (SELECT video_id FROM takedown) AND {valid_id_sql("t.key")}
               ORDER BY t.key""",
            [max_attempts, list(PERMANENT_MEDIA_ERRORS)],
        ).fetchall()

    def invalid_video_ids(self) -> int:
        """How many video rows and video or media targets have an id that the helpers above skip."""
        return self.db.execute(
            f"""SELECT (SELECT count(*) FROM videos WHERE NOT {valid_id_sql("id")})
                     + (SELECT count(*) FROM crawl_targets
                        WHERE kind IN ('video', 'media') AND NOT {valid_id_sql("key")})"""
        ).fetchone()[0]

    def record_media(self, result) -> None:
        """Store a `tkds.collector.media.MediaResult`, counting failed attempts in crawl_targets.

        A result for an invalid video id (no helper here hands one out) is not stored.
        """
        if not ids.is_valid_id(result.video_id):
            return
        with self.writing():
            self.db.execute(
                """INSERT OR REPLACE INTO media (video_id, path, sha256, bytes, width, height, fps,
                       duration_s, has_audio, vcodec, acodec, status, error, fetched_at, video_stream,
                       audio_stream)
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

    # --- the collector's retries over runs
    def failed_targets(self, kinds: list[str]) -> list[tuple[str, str, int, str | None]]:
        """(kind, key, attempts, last_error) of every failed target of these kinds."""
        return self.db.execute(
            """SELECT kind, key, attempts, last_error FROM crawl_targets
               WHERE status = 'failed' AND list_contains(?, kind) ORDER BY kind, key""",
            [kinds],
        ).fetchall()

    def retry_targets(self, kind: str, keys: list[str]) -> None:
        """Make these failed targets pending again; their attempts and last error stay."""
        if keys:
            with self.writing():
                self.db.execute(
                    """UPDATE crawl_targets SET status = 'pending', updated_at = ?
                       WHERE kind = ? AND status = 'failed' AND list_contains(?, key)""",
                    [utcnow(), kind, keys],
                )

    # --- photo posts: their images and sound, downloaded directly
    def photo_sources(self, video_ids: list[str]) -> dict[str, tuple[Any, Any, list[str]]]:
        """For each photo post among `video_ids`, from its latest raw item (the freshest the collector
        holds): its `imagePost.images` and its sound's `playUrl` (the music record's when the item has
        none), as JSON values, and the first URL of each image stored in `video_images`. The URLs are
        checked (https, TikTok hosts) where they are used, by `tkds.collector.media.photo_urls`."""
        rows = self.db.execute(
            """SELECT v.id, json_extract(v.raw, '$.imagePost.images'),
                      coalesce(json_extract(v.raw, '$.music.playUrl'), json_extract(mu.raw, '$.playUrl')),
                      coalesce((SELECT list(i.url ORDER BY i.position) FROM video_images i
                                WHERE i.video_id = v.id), [])
               FROM videos v LEFT JOIN music mu ON mu.id = v.music_id
               WHERE v.kind = 'photo' AND list_contains(?, v.id)""",
            [video_ids],
        ).fetchall()
        return {
            video_id: (json.loads(images) if images else None, json.loads(sound) if sound else None, stored)
            for video_id, images, sound, stored in rows
        }

    def record_photo_media(self, result) -> None:
        """Store a photo post's `MediaResult`: its images in `media_images` (replacing any earlier
        rows; none when it failed), then its media row as `record_media` does."""
        if not ids.is_valid_id(result.video_id):
            return
        rows = [
            (result.video_id, i.position, i.path, i.sha256, i.bytes, i.width, i.height) for i in result.images
        ]
        with self.writing():
            self.db.execute("BEGIN TRANSACTION")
            try:
                self.db.execute("DELETE FROM media_images WHERE video_id = ?", [result.video_id])
                if rows:
                    self.db.executemany("INSERT INTO media_images VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                self.db.execute("COMMIT")
            except BaseException:
                with suppress(duckdb.Error):
                    self.db.execute("ROLLBACK")
                raise
        self.record_media(result)
