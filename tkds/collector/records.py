"""What the parsers extract and the store upserts: one dataclass per DuckDB table.

Ids are strings (19-digit numbers, never floats), checked with `tkds.ids` where records enter: a
record whose id is invalid is not built but kept as a `Refusal`. Counts are exact where TikTok
gave exact values (`statsV2`), else the rounded `stats`; counts read from display text ("304.9K") carry
`rounded`. Every entity keeps its raw JSON, so it can be parsed again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads leaves only unpaired ones


def storable(text: str) -> str:
    """`text` as valid UTF-8, which DuckDB requires: JSON's lone \\ud800 escapes become U+FFFD."""
    return text if text.isascii() else LONE_SURROGATE.sub("\ufffd", text)


@dataclass
class Author:
    id: str
    unique_id: str | None = None
    sec_uid: str | None = None
    nickname: str | None = None
    verified: bool | None = None
    private: bool | None = None
    signature: str | None = None
    raw: dict = field(default_factory=dict)


@dataclass
class AuthorStats:
    author_id: str
    followers: int | None = None
    following: int | None = None
    hearts: int | None = None
    videos: int | None = None
    rounded: bool = False  # some count was display text such as "304.9K"
    observed_at: datetime | None = None  # the source's own scrape time; else the upsert's


@dataclass
class Music:
    id: str
    title: str | None = None
    author_name: str | None = None
    original: bool | None = None
    duration_s: float | None = None
    play_url: str | None = None  # the sound itself: a photo post's audio
    raw: dict = field(default_factory=dict)


@dataclass
class VideoStats:
    video_id: str
    plays: int | None = None
    likes: int | None = None
    comments: int | None = None
    shares: int | None = None
    collects: int | None = None
    rounded: bool = False  # some count was display text such as "304.9K"
    observed_at: datetime | None = None  # the source's own scrape time; else the upsert's


@dataclass(frozen=True)
class Image:
    """One image of a photo post, in its order."""

    url: str
    width: int | None = None
    height: int | None = None


@dataclass
class Video:
    id: str
    author_id: str | None = None
    music_id: str | None = None
    description: str | None = None
    create_time: int | None = None  # unix seconds
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    is_ad: bool | None = None
    location: str | None = None
    hashtags: list[str] = field(default_factory=list)  # lower-case, no '#', first occurrence first
    play_url: str | None = None
    download_url: str | None = None
    kind: str | None = None  # "video", "photo" (a photo-mode post: images with a sound), None if unknown
    images: list[Image] = field(default_factory=list)
    raw: dict = field(default_factory=dict)


@dataclass
class Comment:
    id: str
    video_id: str
    author: str | None = None  # the commenter's uniqueId
    text: str | None = None
    likes: int | None = None
    create_time: int | None = None


@dataclass(frozen=True)
class Refusal:
    """A record (or a field) refused at the gate: `reason` to count by, `detail` quoting a short prefix."""

    reason: str  # "video id", "author id", "music id", "comment id", "username", or "<kind> raw"
    detail: str


@dataclass
class Parsed:
    """Everything one page, API response or saved capture yielded, plus its paging and status."""

    videos: list[Video] = field(default_factory=list)
    video_stats: list[VideoStats] = field(default_factory=list)
    authors: list[Author] = field(default_factory=list)
    author_stats: list[AuthorStats] = field(default_factory=list)
    music: list[Music] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)
    status: int = 0  # TikTok's statusCode / status_code; 0 is ok
    status_msg: str = ""
    cursor: str | None = None
    has_more: bool | None = None
    refused: list[Refusal] = field(default_factory=list)  # what the parser would not build, and why
    shape: str = ""  # the payload's format: "universal", "sigi", "next", "api", or an import format's name

    def extend(self, other: Parsed) -> None:
        for name in ("videos", "video_stats", "authors", "author_stats", "music", "comments", "refused"):
            getattr(self, name).extend(getattr(other, name))

    def deduplicated(self) -> Parsed:
        """One record per key, the last one seen: what a batch of pages can upsert in one statement."""

        def last(records: list, key: str) -> list:
            return list({getattr(r, key): r for r in records}.values())

        def last_snapshot(records: list, key: str) -> list:
            return list({(getattr(r, key), r.observed_at): r for r in records}.values())

        return Parsed(
            videos=last(self.videos, "id"),
            video_stats=last_snapshot(self.video_stats, "video_id"),
            authors=last(self.authors, "id"),
            author_stats=last_snapshot(self.author_stats, "author_id"),
            music=last(self.music, "id"),
            comments=last(self.comments, "id"),
            status=self.status,
            status_msg=self.status_msg,
            cursor=self.cursor,
            has_more=self.has_more,
            refused=list(self.refused),
            shape=self.shape,
        )
