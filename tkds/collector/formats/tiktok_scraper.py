"""tiktok-scraper's JSON export (drawrowfly/tiktok-scraper, the Node CLI and module).

Its CLI writes `JSON.stringify(collector)`: a bare array of post items. Its module returns
`{"collector": [...], ...}`, which people save as is; both are read, and JSON Lines of items too.
An item: id, secretID, text, createTime, authorMeta{id, secUid, name, nickName, verified, private,
signature, avatar, following, fans, heart, video, digg}, musicMeta{musicId, musicName, musicAuthor,
musicOriginal, playUrl, duration, covers}, covers, webVideoUrl, videoUrl (TikTok's downloadAddr, the
watermarked file), videoUrlNoWaterMark, videoMeta{height, width, duration}, diggCount, shareCount,
playCount, commentCount, downloaded, mentions and hashtags[{id, name, title, cover}].

It writes ids as strings and counts as numbers (the README shows some as strings: both are read). It
records no scrape time, so an item's snapshot time is the file's. Its CSV export (json2csv, flattened
with "." separators) has `COLUMNS` as its header names.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tkds.collector import formats
from tkds.collector.formats import FileReport, Format, ImportOptions, Sample
from tkds.collector.formats.jsonstream import Columns, Head, describe, head, read_records
from tkds.collector.records import Parsed

NAME = "tiktok-scraper-json"
# tiktok-scraper's flattened item keys (its CSV header) -> tkds's flat fields (`flat.FIELDS`).
COLUMNS = {
    "id": "video_id",
    "webVideoUrl": "video_url",
    "text": "description",
    "createTime": "create_time",
    "videoMeta.duration": "duration",
    "videoMeta.width": "width",
    "videoMeta.height": "height",
    "playCount": "plays",
    "diggCount": "likes",
    "commentCount": "comments",
    "shareCount": "shares",
    "hashtags": "hashtags",
    "videoUrlNoWaterMark": "play_url",
    "videoUrl": "download_url",
    "authorMeta.id": "author_id",
    "authorMeta.name": "username",
    "authorMeta.nickName": "nickname",
    "authorMeta.secUid": "sec_uid",
    "authorMeta.verified": "verified",
    "authorMeta.private": "private",
    "authorMeta.signature": "signature",
    "authorMeta.fans": "followers",
    "authorMeta.following": "following",
    "authorMeta.heart": "hearts",
    "authorMeta.video": "author_videos",
    "musicMeta.musicId": "music_id",
    "musicMeta.musicName": "music_title",
    "musicMeta.musicAuthor": "music_author",
    "musicMeta.musicOriginal": "music_original",
    "musicMeta.duration": "music_duration",
    "musicMeta.playUrl": "music_play_url",
}
# Where 0 means "not known": no sound, or no size and length (photo posts in later exports).
ZERO_UNKNOWN = frozenset({"width", "height", "duration", "music_id", "music_duration"})
ITEMS = Columns(COLUMNS, ".", ZERO_UNKNOWN)
# Top-level keys of its items; TikTok's web itemStruct (`author`, `stats`, `video`) has none of them.
ITEM_KEYS = {"authorMeta", "musicMeta", "videoMeta", "diggCount", "playCount", "webVideoUrl", "covers"}
# Keys of Apify's TikTok Scraper items, which inherited tiktok-scraper's shape (see formats/apify.py).
APIFY_KEYS = {
    "createTimeISO",
    "collectCount",
    "isSlideshow",
    "slideshowImageLinks",
    "textLanguage",
    "mediaUrls",
    "isPinned",
    "isSponsored",
    "detailedMentions",
    "submittedVideoUrl",
    "searchQuery",
    "fromProfileSection",
}


def is_export_item(keys: set[str]) -> bool:
    """An item of this shape: an id and at least two of its own keys."""
    return "id" in keys and len(keys & ITEM_KEYS) >= 2


def layout(parsed: Head) -> str:
    """Where the items are, as a `jsonstream.items` path: a top-level array ("item"), the module
    result's "collector" array, or top-level objects (JSON Lines, "")."""
    if parsed.opener == "[":
        return "item"
    if "collector" in parsed.keys(""):
        return "collector.item"
    return ""


def sniff(sample: Sample) -> bool:
    parsed = head(sample)
    prefix = layout(parsed)
    keys = parsed.keys(prefix)
    return is_export_item(keys) and not keys & APIFY_KEYS


def fields(item: dict[str, Any]) -> dict[str, Any]:
    """One item's values under `flat.FIELDS` names."""
    return ITEMS.pick(item)


def read(path: Path, options: ImportOptions, report: FileReport) -> Iterator[Parsed]:
    prefix = layout(head(formats.sample(path)))
    report.notes.append(describe(prefix))
    return read_records(path, prefix, report, fields, NAME)


FORMAT = Format(NAME, "tiktok-scraper JSON export", sniff, read)
