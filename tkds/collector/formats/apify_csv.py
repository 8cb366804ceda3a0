"""Apify's TikTok Scraper (clockworks/tiktok-scraper) dataset exported as CSV.

Apify flattens each dataset item with `/`: nested objects as `authorMeta/name`, `authorMeta/fans`,
`musicMeta/musicId`, `videoMeta/duration`, and arrays by index (`hashtags/0/name`, `hashtags/1/name`,
`mentions/0`, `mediaUrls/0`). `webVideoUrl` is the page; `isSlideshow` marks a photo post;
`createTimeISO` repeats `createTime`.
"""

from __future__ import annotations

from typing import Any

from tkds.collector.formats.flat import TRUE
from tkds.collector.formats.table import TableKind, format_for

NESTED = ("authorMeta/", "videoMeta/", "musicMeta/")


def claims(columns: list[str]) -> bool:
    return any(column.startswith(NESTED) for column in columns)


def finish(row: dict[str, Any], record: dict[str, Any]) -> None:
    """`isSlideshow` (true or false) is the post's kind."""
    if "kind" in record:
        record["kind"] = "photo" if str(record["kind"]).strip().lower() in TRUE else "video"


ALIASES = {"isslideshow": "kind"}  # read by `finish`
KIND = TableKind("apify-csv", "Apify TikTok Scraper CSV export", claims, ALIASES, finish=finish)
FORMAT = format_for(KIND)
