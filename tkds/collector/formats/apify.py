"""Apify's TikTok Scraper (the clockworks/tiktok-scraper actor): its dataset exported as JSON.

A dataset export is a JSON array of items (or JSON Lines, Apify's "jsonl"; or the API client's
`{"items": [...], "total", "offset", ...}` page). Items keep tiktok-scraper's shape and add to it:
id, text, textLanguage, createTime, createTimeISO, isAd, locationCreated, authorMeta{id, name,
profileUrl, nickName, verified, signature, bioLink, avatar, privateAccount, following, friends,
fans, heart, video, digg}, musicMeta{musicName, musicAuthor, musicOriginal, playUrl, musicId, ...},
webVideoUrl, mediaUrls (files the actor stored on Apify, not TikTok's), videoMeta{height, width,
duration, coverUrl, downloadAddr, subtitleLinks, ...}, diggCount, shareCount, playCount,
collectCount, commentCount, repostCount, mentions, hashtags[{id, name, title, cover}], isSlideshow,
slideshowImageLinks[{tiktokLink, downloadLink}] for photo posts (whose videoMeta sizes are 0),
isPinned, isSponsored, and the input that found it (searchQuery, input, submittedVideoUrl).
A view with fewer fields ("Overview") writes the same names flattened: "authorMeta.name".

Items carry no scrape time, so the file's time is the snapshot time. `APIFY_COLUMNS` and `fields`
name Apify's flattened columns (its CSV export's "authorMeta/name", "hashtags/0/name") in tkds's
flat fields, for a table reader as much as for the JSON here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tkds.collector import formats
from tkds.collector.formats import FileReport, Format, ImportOptions, Sample
from tkds.collector.formats.jsonstream import Columns, Head, describe, head, read_records
from tkds.collector.formats.tiktok_scraper import APIFY_KEYS, ZERO_UNKNOWN
from tkds.collector.records import Parsed

NAME = "apify-json"
# Apify's flattened column names ("/" between levels, as in its CSV export) -> `flat.FIELDS`; where
# two name one field, the first with a value wins.
APIFY_COLUMNS = {
    "id": "video_id",
    "webVideoUrl": "video_url",
    "submittedVideoUrl": "video_url",
    "text": "description",
    "createTime": "create_time",
    "createTimeISO": "create_time",
    "videoMeta/duration": "duration",
    "videoMeta/width": "width",
    "videoMeta/height": "height",
    "playCount": "plays",
    "diggCount": "likes",
    "commentCount": "comments",
    "shareCount": "shares",
    "collectCount": "collects",
    "hashtags": "hashtags",
    "isAd": "is_ad",
    "locationCreated": "location",
    "videoMeta/downloadAddr": "download_url",
    "authorMeta/id": "author_id",
    "authorMeta/name": "username",
    "authorMeta/nickName": "nickname",
    "authorMeta/secUid": "sec_uid",
    "authorMeta/verified": "verified",
    "authorMeta/privateAccount": "private",
    "authorMeta/signature": "signature",
    "authorMeta/fans": "followers",
    "authorMeta/following": "following",
    "authorMeta/heart": "hearts",
    "authorMeta/video": "author_videos",
    "musicMeta/musicId": "music_id",
    "musicMeta/musicName": "music_title",
    "musicMeta/musicAuthor": "music_author",
    "musicMeta/musicOriginal": "music_original",
    "musicMeta/duration": "music_duration",
    "musicMeta/playUrl": "music_play_url",
}
# A flattened list column: "hashtags/0/name", "slideshowImageLinks/2/tiktokLink".
LIST_COLUMN = re.compile(r"(hashtags|slideshowImageLinks)/([0-9]+)/(name|tiktokLink|downloadLink)")
NESTED = ("authorMeta", "musicMeta", "videoMeta")
ITEMS = Columns(APIFY_COLUMNS, "/", ZERO_UNKNOWN)


def is_apify_item(keys: set[str]) -> bool:
    """An item of this actor: an id or a video URL, its nested (or flattened) metas, and a key that
    tiktok-scraper never wrote."""
    nested = any(key in NESTED or key.split(".")[0].split("/")[0] in NESTED for key in keys)
    return bool(keys & {"id", "webVideoUrl"}) and nested and bool(keys & APIFY_KEYS)


def layout(parsed: Head) -> str:
    """Where the items are: a top-level array, the API client's `items` page, or JSON Lines."""
    if parsed.opener == "[":
        return "item"
    if {"items", "total"} <= parsed.keys(""):
        return "items.item"
    return ""


def sniff(sample: Sample) -> bool:
    parsed = head(sample)
    return is_apify_item(parsed.keys(layout(parsed)))


def _lists(flat: dict[str, Any]) -> tuple[list, list]:
    """A flattened row's hashtags and slideshow image URLs, from its list columns, in order."""
    tags: dict[int, Any] = {}
    images: dict[int, dict[str, Any]] = {}
    for column, value in flat.items():
        if value in (None, "") or not (match := LIST_COLUMN.fullmatch(column)):
            continue
        if match[1] == "hashtags":
            tags[int(match[2])] = value
        else:
            images.setdefault(int(match[2]), {})[match[3]] = value
    return [tags[n] for n in sorted(tags)], [images[n] for n in sorted(images)]


def _flag(value: Any) -> bool | None:
    """`isSlideshow` as a bool: JSON's true/false, or a CSV's "true"/"false"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _image_urls(links: Any) -> list[str]:
    """TikTok's own image URLs first (`downloadLink` may be a copy on Apify's storage)."""
    urls = []
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and (url := link.get("tiktokLink") or link.get("downloadLink")):
            urls.append(url)
        elif isinstance(link, str) and link:
            urls.append(link)
    return urls


def fields(row: dict[str, Any]) -> dict[str, Any]:
    """An Apify item (nested JSON) or a flattened row ("authorMeta/name" or "authorMeta.name"
    columns, list columns such as "hashtags/0/name") in `flat.FIELDS` names."""
    flattened = any("/" in key or "." in key for key in row)
    if flattened:
        row = {key.replace(".", "/"): value for key, value in row.items()}
    record = ITEMS.pick(row)
    tags, images = _lists(row) if flattened else ([], [])
    if "hashtags" not in record and tags:
        record["hashtags"] = tags
    image_urls = _image_urls(row.get("slideshowImageLinks") or images)
    if image_urls:
        record["images"] = image_urls
    slideshow = _flag(row.get("isSlideshow"))
    if slideshow is not None:
        record["kind"] = "photo" if slideshow else "video"
    return record


def read(path: Path, options: ImportOptions, report: FileReport) -> Iterator[Parsed]:
    prefix = layout(head(formats.sample(path)))
    report.notes.append(describe(prefix))
    return read_records(path, prefix, report, fields, NAME)


FORMAT = Format(NAME, "Apify TikTok Scraper JSON export", sniff, read)
