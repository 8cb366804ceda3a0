"""TikTok Research API responses, saved as researchers save them.

A video query (`/v2/research/video/query/`) answers `{"data": {"videos": [...], "cursor", "has_more",
"search_id"}, "error": {"code", "message", "log_id"}}`, at most 100 videos a response; a video has
the fields the query asked for: id, video_description, create_time, region_code, share_count,
view_count, like_count, comment_count, favorites_count, music_id, hashtag_names, username,
video_duration, effect_ids, playlist_id, voice_to_text, is_stem_verified, video_label, video_tag,
hashtag_info_list, video_mention_list, … A user info query (`/v2/research/user/info/`) answers
`{"data": {display_name, bio_description, avatar_url, is_verified, follower_count, following_count,
likes_count, video_count, bio_url}, "error": {...}}`.

Read: one response, JSON Lines of responses or of videos, and a JSON array of either. Ids and counts
are exact integers. The API gives no author id, neither on videos nor in user info: a video's
`username` stays in its raw JSON only, and a user info is refused as "no author id" (tkds keys
authors by id and never makes one up). There is no scrape time, so the file's time is used.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tkds import ids
from tkds.collector import formats
from tkds.collector.formats import FileReport, Format, ImportOptions, Sample, batched
from tkds.collector.formats.jsonstream import Columns, head, items, record
from tkds.collector.records import Parsed, Refusal

NAME = "research-api"
COLUMNS = {
    "id": "video_id",
    "video_description": "description",
    "create_time": "create_time",
    "region_code": "location",
    "video_duration": "duration",
    "view_count": "plays",
    "like_count": "likes",
    "comment_count": "comments",
    "share_count": "shares",
    "favorites_count": "collects",
    "favourites_count": "collects",  # how some wrappers spell it
    "hashtag_names": "hashtags",
    "music_id": "music_id",
    "username": "username",
}
# Names only the Research API's snake_case videos use (TikTok's web JSON is camelCase).
VIDEO_KEYS = set(COLUMNS) - {"id", "username"} | {
    "effect_ids",
    "playlist_id",
    "voice_to_text",
    "is_stem_verified",
    "hashtag_info_list",
    "video_mention_list",
    "video_label",
    "video_tag",
}
USER_KEYS = {
    "display_name",
    "bio_description",
    "avatar_url",
    "is_verified",
    "follower_count",
    "following_count",
    "likes_count",
    "video_count",
    "bio_url",
}
ZERO_UNKNOWN = frozenset({"music_id", "duration"})
VIDEOS = Columns(COLUMNS, ".", ZERO_UNKNOWN)


def is_video(keys: set[str]) -> bool:
    return ("id" in keys or "video_description" in keys) and len(keys & VIDEO_KEYS) >= 2


def is_user(keys: set[str]) -> bool:
    return len(keys & USER_KEYS) >= 2


def sniff(sample: Sample) -> bool:
    parsed = head(sample)
    top = "item" if parsed.opener == "[" else ""
    data = f"{top}.data" if top else "data"
    return (
        (
            "videos" in parsed.keys(data)
            and bool(parsed.keys(data + ".videos.item") & VIDEO_KEYS or parsed.keys(top) & {"error"})
        )
        or is_user(parsed.keys(data))
        or is_video(parsed.keys(top))
        or is_user(parsed.keys(top))
    )


def fields(video: dict[str, Any]) -> dict[str, Any]:
    return VIDEOS.pick(video)


def _user_refusal(user: dict[str, Any]) -> Parsed:
    name = ids.preview(user.get("display_name") or user.get("username") or "?")
    detail = f"user info of {name}: the Research API gives no user id, so it is not stored"
    return Parsed(shape=NAME, refused=[Refusal("no author id", detail)])


def _records(value: Any, report: FileReport, tally: Counter) -> Iterator[Parsed]:
    """One top-level value (a response, a video, a user info) as Parsed records."""
    data = value.get("data") if isinstance(value, dict) else None
    if isinstance(data, dict):
        tally["responses"] += 1
        error = value.get("error")
        if isinstance(error, dict) and error.get("code") not in (None, "", "ok"):
            tally[f"errors {ids.preview(str(error.get('code')))}"] += 1
        value = data.get("videos", data)
    for item in value if isinstance(value, list) else [value]:
        if item == {}:  # an error response's empty data holds nothing
            continue
        report.rows += 1
        if isinstance(item, dict) and is_user(set(item)) and not is_video(set(item)):
            tally["user infos"] += 1
            yield _user_refusal(item)
        else:
            tally["videos"] += 1
            yield record(item, fields, NAME, report.rows)


def read(path: Path, options: ImportOptions, report: FileReport) -> Iterator[Parsed]:
    top = "item" if head(formats.sample(path)).opener == "[" else ""

    def parsed() -> Iterator[Parsed]:
        tally: Counter = Counter()
        for value in items(path, top):
            yield from _records(value, report, tally)
        report.notes.append(", ".join(f"{what}: {n}" for what, n in tally.items()) or "no responses")
        if tally["user infos"]:
            report.notes.append("user infos carry no user id: not stored")

    return batched(parsed())


FORMAT = Format(NAME, "TikTok Research API responses", sniff, read)
