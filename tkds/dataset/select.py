"""Select: the videos a dataset is built from, with the metadata each sample's json carries.

A photo post is selected like a video: its media row (its sound) with status ok, and its images from
`media_images`. Its `sha256` is a digest of its sound's and images' sha256s, so that exact-copy
dedupe and transcode reuse see all of its content (two posts sharing only a sound are not copies).

Nothing read from the DuckDB file is trusted: a video id that is not a digit string is refused (it would
become a path and a tar member name), invalid author ids and usernames are read as unknown, and `--where`
must be one SQL expression, run where it cannot write.
"""

from __future__ import annotations

import csv
import gc
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from tkds import ids
from tkds.errors import TkdsError

SELECT_VIDEOS = """
SELECT v.id, v.author_id, au.unique_id, v.music_id, mu.title, v.description,
       epoch(v.create_time)::BIGINT, v.source, m.path, m.sha256, m.bytes,
       m.width, m.height, m.fps, m.duration_s, m.has_audio, m.vcodec, m.acodec, m.frame_hash,
       m.video_stream, m.audio_stream,
       s.plays, s.likes, s.comments, s.shares, s.collects, epoch(s.observed_at)::BIGINT,
       a.followers, a.following, a.hearts, a.videos,
       coalesce((SELECT list(h.tag ORDER BY h.position) FROM video_hashtags h WHERE h.video_id = v.id), []),
       coalesce(v.kind, 'video'),
       coalesce((SELECT list(struct_pack(path := i.path, sha256 := i.sha256, bytes := i.bytes,
                                         width := i.width, height := i.height) ORDER BY i.position)
                 FROM media_images i WHERE i.video_id = v.id), [])
FROM videos v
JOIN media m ON m.video_id = v.id AND m.status = 'ok'
LEFT JOIN music mu ON mu.id = v.music_id
LEFT JOIN authors au ON au.id = v.author_id
LEFT JOIN video_stats_latest s ON s.video_id = v.id
LEFT JOIN author_stats_latest a ON a.author_id = v.author_id
WHERE v.id NOT IN (SELECT video_id FROM takedown) AND list_contains(?, coalesce(v.kind, 'video')) AND (
{where}
)
ORDER BY v.id
"""
INVALID_ID = "invalid_id"
BATCH_ROWS = 10_000  # rows fetched at a time: the selection never holds every raw row at once
# What a build holds per selected video at its peak (its candidate, prepared facts and the dedupe index):
# 290,000 videos peaked at about 1.7 GB, DuckDB's memory_limit included (benchmarks/shard_scale.py).
BYTES_PER_VIDEO = 5_000
RESERVED_BYTES = 768 * 2**20  # DuckDB's memory_limit (the store's 512 MB) and the process itself
KINDS = {"video": ["video"], "photo": ["photo"], "all": ["video", "photo"]}  # --kind -> videos.kind


VIDEO_COUNTS = ("plays", "likes", "comments", "shares", "collects", "observed_at")
AUTHOR_COUNTS = ("followers", "following", "hearts", "videos")
MEDIA_FACTS = ("width", "height", "fps", "duration_s", "has_audio", "vcodec", "acodec", "frame_hash",
               "video_stream", "audio_stream")  # fmt: skip
SHARED_FACTS = ("vcodec", "acodec")  # a handful of values over all videos


@dataclass(slots=True)  # no per-video __dict__: 290,000 of them are held at once
class Candidate:
    """A video with usable media, and everything its sample json will say about it."""

    id: str
    author_id: str | None
    author_unique_id: str | None
    music_id: str | None
    music_title: str | None
    description: str | None
    create_time: int | None
    source: str | None
    path: Path | None  # a photo post's sound; None when it has none
    sha256: str
    bytes: int
    stats: dict
    author_stats: dict
    hashtags: list[str]
    media: dict = field(default_factory=dict)  # the collector's ffprobe facts and any frame hash
    labels: dict = field(default_factory=dict)
    kind: str = "video"  # or "photo": a photo post
    images: list[dict] = field(default_factory=list)  # a photo post's: path, sha256, bytes, width, height


def photo_digest(sound_sha256: str | None, images: list[dict]) -> str:
    """A photo post's content digest: its sound's and its images' sha256s, in slideshow order."""
    digest = hashlib.sha256(b"tkds-photo-v1")
    for part in (sound_sha256, *(image["sha256"] for image in images)):
        digest.update(f"{part}\0".encode())
    return digest.hexdigest()


def check_kind(kind: object) -> None:
    """`kind` is one of KINDS, else a `TkdsError` naming --kind."""
    if not isinstance(kind, str) or kind not in KINDS:
        raise TkdsError(f"--kind {ids.preview(kind)}: choose one of {', '.join(KINDS)}")


def select_candidates(
    db: duckdb.DuckDBPyConnection, where: str | None, db_path: Path, kind: str = "all"
) -> tuple[list[Candidate], list[str]]:
    """Videos with media status ok, not taken down, matching the optional SQL `where` (on `v`, the videos)
    and `kind` ("video", "photo" or "all"; a video of unknown kind counts as a video).

    Returns the candidates and the reasons of the rows refused for an invalid video id
    (`invalid_id: …`, quoting a short prefix of the id, never the id itself as a path).
    """
    check_kind(kind)
    query = SELECT_VIDEOS.format(where=_checked_where(where))
    candidates: list[Candidate] = []
    refused: list[str] = []
    shared: dict = {}  # one object for equal values that many videos repeat (an author's, a sound's)
    free = available_memory()
    most = None if free is None else most_videos(free)
    collecting = gc.isenabled()
    gc.disable()  # candidates hold no cycles: full collections while 290,000 are made cost 40% of the CPU
    db.execute("BEGIN TRANSACTION")  # rolled back: whatever the selection did is undone
    try:
        result = db.execute(query, [KINDS[kind]])
        while rows := result.fetchmany(BATCH_ROWS):
            for row in rows:
                _read_row(row, db_path, shared, candidates, refused)
            if most is not None and len(candidates) > most:
                raise TkdsError(
                    f"--db {db_path}: more than {most:,} videos selected, the most this machine's free "
                    f"memory ({free / 2**30:.1f} GB) can build at once (about "
                    f"{BYTES_PER_VIDEO // 1000} KB each); build it in parts with --where (for example "
                    "one --out per year of v.create_time), or use a machine with more memory"
                )
    except duckdb.Error as error:
        raise TkdsError(
            f"--where {ids.preview(where)} is not valid SQL here: "
            f"{ids.preview(str(error).splitlines()[0], 120)}"
        ) from None
    finally:
        db.execute("ROLLBACK")
        if collecting:
            gc.enable()
    return candidates, refused


def available_memory() -> int | None:
    """Bytes of memory this process can still get: Linux's MemAvailable, or less where a cgroup (a
    container) caps it; None where neither is known."""
    limits = []
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            limits += [int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    try:
        cgroup = Path("/sys/fs/cgroup")
        limits.append(int((cgroup / "memory.max").read_text()) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):  # no cgroup v2 here, or "max": no cap
        pass
    return min(limits) if limits else None


def most_videos(free: int) -> int:
    """The most videos one build can select with `free` bytes of memory."""
    return max(0, free - RESERVED_BYTES) // BYTES_PER_VIDEO


def _read_row(
    row: tuple, db_path: Path, shared: dict, candidates: list[Candidate], refused: list[str]
) -> None:
    """Append the row's `Candidate`, or the reason its video id is refused."""
    (vid, author, unique_id, music, title, text, created, source, path, sha, size, *rest) = row
    if not ids.is_valid_id(vid):
        refused.append(f"{INVALID_ID}: {_reason(vid)}")
        return
    facts, counts, tags, post_kind, images = rest[:10], rest[10:20], rest[20], rest[21], rest[22]
    if post_kind == "photo":
        images = [image | {"path": _media_path(image["path"], db_path)} for image in images]
        sha = photo_digest(sha, images)

    def one(value: object) -> object:
        return shared.setdefault(value, value)

    candidates.append(
        Candidate(
            id=vid, author_id=one(author) if ids.is_valid_id(author) else None,
            author_unique_id=one(unique_id) if ids.is_valid_username(unique_id) else None,
            music_id=one(music), music_title=one(title),
            description=text,
            create_time=created, source=one(source), sha256=sha, bytes=size,
            path=None if path is None else _media_path(path, db_path),
            stats=dict(zip(VIDEO_COUNTS, counts[:6], strict=True)),
            # an author's counts are one dict for all their videos (nothing changes them)
            author_stats=shared.setdefault(("author_stats", author, *counts[6:]),
                                           dict(zip(AUTHOR_COUNTS, counts[6:], strict=True))),
            hashtags=[one(tag) for tag in tags],
            media={name: one(fact) if name in SHARED_FACTS else fact
                   for name, fact in zip(MEDIA_FACTS, facts, strict=True)},
            labels={"target": source},
            kind=one(post_kind), images=images if post_kind == "photo" else [],
        )
    )  # fmt: skip


def _reason(video_id: object) -> str:
    try:
        ids.check_id(video_id)
    except ids.InvalidId as error:
        return str(error)
    return ""


def _checked_where(where: str | None) -> str:
    """`where` when it is exactly one SQL expression (subqueries allowed), else a `TkdsError`."""
    if where is None:
        return "TRUE"
    try:
        duckdb.SQLExpression(where)
        statements = duckdb.extract_statements(SELECT_VIDEOS.format(where=where))
    except (duckdb.Error, ValueError) as error:
        raise TkdsError(
            f"--where {ids.preview(where)}: give one SQL condition on the videos, such as "
            f'"v.duration_s < 60" ({ids.preview(str(error).splitlines()[0], 120)})'
        ) from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise TkdsError(f"--where {ids.preview(where)}: give one SQL condition, not statements")
    return where


def _media_path(path: str | None, db_path: Path) -> Path:
    """Stored paths are absolute; older relative ones are tried from here, then from the DB's folder."""
    candidate = Path(path or "")
    if candidate.is_absolute() or candidate.exists():
        return candidate
    return db_path.parent / candidate


def read_labels(path: Path) -> dict[str, dict]:
    """Per-video labels: a SynthTok corpus card (its factors) or a CSV with an `id` column."""
    try:
        if path.suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as handle:
                # a row with more fields than the header has them under the key None: dropped
                rows = csv.DictReader(handle)
                return {row.pop("id"): {k: v for k, v in row.items() if k is not None} for row in rows}
        card = json.loads(path.read_text())
        return {
            video["id"]: {
                "category": video["category_name"],
                "originality": video["originality"],
                "is_outlier": video["is_outlier"],
            }
            for video in card["videos"]
        }
    except (OSError, ValueError, KeyError, TypeError, csv.Error) as error:
        # the error's text can quote the whole file (a UnicodeDecodeError holds every byte): a prefix only
        raise TkdsError(
            f"--labels {path}: not a SynthTok corpus.json or a CSV with an id column "
            f"({type(error).__name__}: {ids.preview(str(error), 80)})"
        ) from None
