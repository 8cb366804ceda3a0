"""pyktok's metadata CSV (dfreelon/pyktok, `save_tiktok(…, metadata_fn=…)`).

Its header (`generate_data_row`): video_id, video_timestamp, video_duration, video_locationcreated,
video_diggcount, video_sharecount, video_commentcount, video_playcount, video_description, video_is_ad,
video_stickers, author_username, author_name, author_followercount, author_followingcount,
author_heartcount, author_videocount, author_diggcount, author_verified, poi_name, poi_address,
poi_city; early releases had video_length, video_title and video_fn instead of video_duration and
video_stickers. It has no author id, so author counts cannot be stored (an author is keyed by id).
`video_timestamp` is `datetime.fromtimestamp(createTime).isoformat()`: the scraping machine's local
time with no zone, read here as UTC.
"""

from __future__ import annotations

from tkds.collector.formats.table import TableKind, format_for, normal

SIGNATURE = {"video_id", "video_timestamp", "author_username"}

ALIASES = {
    normal("author_diggcount"): "",  # the likes the author gave, not received
    normal("video_title"): "description",
}

KIND = TableKind(
    "pyktok-csv",
    "pyktok CSV",
    lambda columns: set(columns) >= SIGNATURE,
    ALIASES,
    notes=("video_timestamp is the scraping machine's local time, read as UTC",),
)
FORMAT = format_for(KIND)
