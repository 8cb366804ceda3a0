"""One flat record (an export item or a table row, read into tkds's field names) as `Parsed` records.

Every tool's export and every table maps its own names onto `FIELDS`, then calls `flat_record`, so
the honest-value rules live in one place (`tkds.collector.values`):
- counts may be display text ("304.9K"): parsed, and the snapshot flagged `rounded`;
- an id written as a float has lost digits: the video id is recovered from `video_url` when there is
  one, otherwise it is refused as "lossy id"; a lossy author or sound id is refused the same way,
  and the row keeps only the entities whose own ids are exact. A wrong id is never stored;
- `scraped_at` becomes the snapshot's observation time.
"""

from __future__ import annotations

from typing import Any

from tkds import ids
from tkds.collector.hashtags import hashtags as extract_hashtags
from tkds.collector.records import (
    Author,
    AuthorStats,
    Image,
    Music,
    Parsed,
    Refusal,
    Video,
    VideoStats,
    storable,
)
from tkds.collector.values import (
    LossyId,
    count,
    duration_s,
    exact_id,
    music_id_from_url,
    observed_at,
    unix_time,
    username_from_url,
    video_id_from_url,
)
from tkds.errors import TkdsError

# tkds's field names for a flat record, with what each holds.
FIELDS = {
    "video_id": "the video's id (digits)",
    "video_url": "the video's TikTok URL (…/@user/video/ID); recovers a lossy id",
    "description": "the caption",
    "create_time": "when it was posted (unix seconds or ISO 8601)",
    "duration": "seconds, or mm:ss",
    "width": "pixels",
    "height": "pixels",
    "plays": "play count",
    "likes": "like (digg) count",
    "comments": "comment count",
    "shares": "share count",
    "collects": "collect (save) count",
    "hashtags": "a list, or a comma- or space-separated string",
    "is_ad": "true or false",
    "location": "the region it was posted from",
    "play_url": "the media URL",
    "download_url": "the watermarked media URL",
    "images": "a photo post's image URLs (a list, or a comma-separated string)",
    "kind": "video or photo",
    "author_id": "the author's id (digits)",
    "username": "the author's uniqueId",
    "nickname": "the author's display name",
    "sec_uid": "the author's secUid",
    "verified": "true or false",
    "private": "true or false",
    "signature": "the author's bio",
    "followers": "the author's follower count",
    "following": "how many the author follows",
    "hearts": "the author's total likes",
    "author_videos": "the author's video count",
    "music_id": "the sound's id (digits)",
    "music_url": "the sound's TikTok URL (…/music/Title-ID); recovers a lossy id",
    "music_title": "the sound's title",
    "music_author": "the sound's author name",
    "music_original": "true if the author's own sound",
    "music_duration": "the sound's length in seconds",
    "music_play_url": "the sound's audio URL",
    "scraped_at": "when the row was collected (unix seconds or ISO 8601)",
}
KINDS = ("video", "photo")
VIDEO_COUNTS = {name: name for name in ("plays", "likes", "comments", "shares", "collects")}
AUTHOR_COUNTS = {"followers": "followers", "following": "following", "hearts": "hearts"}
AUTHOR_COUNTS["videos"] = "author_videos"
TRUE = {"true", "1", "yes", "y", "t"}
FALSE = {"false", "0", "no", "n", "f", ""}
INT32 = 2**31


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = str(value).strip()
    return storable(text) if text else None


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool) or value is None:
        return value
    text = str(value).strip().lower()
    return True if text in TRUE else False if text in FALSE else None


def _size(value: Any) -> int | None:
    number, _ = count(value)
    return number if number is not None and number < INT32 else None


def _checked_id(
    out: Parsed, value: Any, kind: str, url_id: str | None = None, of_video: str | None = None
) -> str | None:
    """An exact id, or the one in the row's URL; a lossy or invalid one is refused (None), naming
    `of_video` when the id is an author's or a sound's, so each row's refusal counts once."""
    where = f"video {of_video}: " if of_video else ""
    if kind != "video" and str(value).strip() == "0":  # exports write 0 for "no sound", "no author"
        return url_id
    try:
        exact = exact_id(value, kind)
    except LossyId as error:
        if url_id is not None:
            return url_id
        out.refused.append(Refusal("lossy id", where + str(error)))
        return None
    except ids.InvalidId as error:
        out.refused.append(Refusal(f"{kind} id", where + str(error)))
        return None
    return exact if exact is not None else url_id


def _username(out: Parsed, value: Any) -> str | None:
    text = _text(value)
    text = text.lstrip("@") if text else None
    if text is None or ids.is_valid_username(text):
        return text
    out.refused.append(Refusal("username", f"{ids.preview(text)}: not a TikTok username; stored as NULL"))
    return None


def _counts(record: dict, names: dict[str, str]) -> tuple[dict[str, int | None], bool]:
    values, rounded = {}, False
    for target, source in names.items():
        values[target], was_rounded = count(record.get(source))
        rounded |= was_rounded and values[target] is not None
    return values, rounded


def _images(value: Any) -> list[Image]:
    if isinstance(value, str):
        value = [part for part in value.replace(";", ",").split(",") if part.strip()]
    images = []
    for entry in value if isinstance(value, list) else []:
        if isinstance(entry, dict):
            url = _text(entry.get("url"))
            if url:
                images.append(Image(url, _size(entry.get("width")), _size(entry.get("height"))))
        elif (url := _text(entry)) is not None:
            images.append(Image(url))
    return images


def flat_record(record: dict[str, Any], raw: dict, shape: str) -> Parsed:
    """One flat record in `FIELDS` names as Parsed records; `raw` is what the source held, kept whole.

    A row without a usable video id yields its refusal, and its author and sound when their ids are
    exact.
    """
    out = Parsed(shape=shape)
    scraped = observed_at(record.get("scraped_at"))
    url = _text(record.get("video_url"))
    video_id = _checked_id(out, record.get("video_id"), "video", video_id_from_url(url))
    if video_id is None and not out.refused:
        out.refused.append(Refusal("no id", "a row without a video id or a video URL"))
    username = _username(out, record.get("username")) or username_from_url(url)
    author_id = _checked_id(out, record.get("author_id"), "author", of_video=video_id)
    if author_id is not None:
        out.authors.append(
            Author(
                id=author_id,
                unique_id=username,
                sec_uid=_text(record.get("sec_uid")),
                nickname=_text(record.get("nickname")),
                verified=_flag(record.get("verified")),
                private=_flag(record.get("private")),
                signature=_text(record.get("signature")),
                raw=raw,
            )
        )
        stats, rounded = _counts(record, AUTHOR_COUNTS)
        if any(value is not None for value in stats.values()):
            out.author_stats.append(AuthorStats(author_id, **stats, rounded=rounded, observed_at=scraped))
    music_url = _text(record.get("music_url"))
    music_id = _checked_id(
        out, record.get("music_id"), "music", music_id_from_url(music_url), of_video=video_id
    )
    if music_id is not None:
        out.music.append(
            Music(
                id=music_id,
                title=_text(record.get("music_title")),
                author_name=_text(record.get("music_author")),
                original=_flag(record.get("music_original")),
                duration_s=duration_s(record.get("music_duration")),
                play_url=_text(record.get("music_play_url")),
                raw=raw,
            )
        )
    if video_id is None:
        return out
    images = _images(record.get("images"))
    description = _text(record.get("description"))
    out.videos.append(
        Video(
            id=video_id,
            author_id=author_id,
            music_id=music_id,
            description=description,
            create_time=unix_time(record.get("create_time")),
            duration_s=duration_s(record.get("duration")),
            width=_size(record.get("width")),
            height=_size(record.get("height")),
            is_ad=_flag(record.get("is_ad")),
            location=_text(record.get("location")),
            hashtags=extract_hashtags(record.get("hashtags"), caption=description),
            play_url=_text(record.get("play_url")),
            download_url=_text(record.get("download_url")),
            kind="photo" if images else kind if (kind := _text(record.get("kind"))) in KINDS else None,
            images=images,
            raw=raw,
        )
    )
    stats, rounded = _counts(record, VIDEO_COUNTS)
    if any(value is not None for value in stats.values()):
        out.video_stats.append(VideoStats(video_id, **stats, rounded=rounded, observed_at=scraped))
    return out


def parse_mapping(text: str | None) -> dict[str, str] | None:
    """`--map` text, "column=field,…", as {column: field}; a `TkdsError` names a bad pair and the fields."""
    if text is None:
        return None
    mapping: dict[str, str] = {}
    for pair in text.split(","):
        column, equals, name = (part.strip() for part in pair.partition("="))
        if not pair.strip():
            continue
        if not equals or not column or not name:
            raise TkdsError(f"--map {ids.preview(pair)}: not COLUMN=FIELD, e.g. vid_nlike=likes")
        if name not in FIELDS:
            raise TkdsError(
                f"--map {ids.preview(pair)}: {ids.preview(name)} is not a tkds field; "
                f"the fields are {', '.join(FIELDS)}"
            )
        if column in mapping:
            raise TkdsError(f"--map names the column {ids.preview(column)} twice")
        mapping[column] = name
    if not mapping:
        raise TkdsError("--map is empty: give COLUMN=FIELD pairs, e.g. vid_id=video_id")
    return mapping
