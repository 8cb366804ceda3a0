"""tiktok-scraper's CSV export (drawrowfly/tiktok-scraper, `-t csv`).

It writes its collector items through json2csv with `flatten`: nested objects become dotted columns
(`authorMeta.name`, `musicMeta.musicId`, `videoMeta.duration`, `covers.default`) and arrays stay JSON
text in one cell (`hashtags` = `[{"id":…,"name":…}]`, `mentions`). Its early releases wrote a short
header (`id,text,createTime,authorId,musicId,videoUrl,diggCount,shareCount,commentCount`). In both,
`videoUrl` is the watermarked media address, not the page (`webVideoUrl`). The file is named
`INPUT_<Date.now()>.csv`: that millisecond time, when present, is the scrape time.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from tkds.collector.formats.table import TableKind, format_for, normal

LEGACY_HEADER = {"id", "text", "createTime", "authorId", "musicId", "diggCount"}
SAVED_AT = re.compile(r"_([0-9]{13})$")  # `${input}_${Date.now()}`
FIRST_EXPORT_MS = 1_451_606_400_000  # 2016-01-01: no tiktok-scraper export is older


def claims(columns: list[str]) -> bool:
    names = set(columns)
    return bool({"authorMeta.name", "authorMeta.id"} & names) or names >= LEGACY_HEADER


def saved_at(path: Path) -> dict[str, Any]:
    """The scrape time in the export's file name, if it has the tool's own name."""
    match = SAVED_AT.search(path.stem)
    if match and FIRST_EXPORT_MS <= int(match[1]) <= (time.time() + 86400) * 1000:
        return {"scraped_at": int(match[1])}
    return {}


ALIASES = {
    normal("videoUrl"): "download_url",
    normal("videoUrlNoWaterMark"): "play_url",
    normal("text"): "description",
}

KIND = TableKind(
    "tiktok-scraper-csv",
    "tiktok-scraper CSV export",
    claims,
    ALIASES,
    constants=saved_at,
)
FORMAT = format_for(KIND)
