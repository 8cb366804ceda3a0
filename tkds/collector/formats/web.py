"""TikTok's own payloads: saved pages of every era (UNIVERSAL, SIGI_STATE, __NEXT_DATA__), web API
responses, item lists and SIGI dumps, and TikTok-Api's item dicts (the web `itemStruct`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from tkds.collector.formats import FileReport, Format, ImportOptions, Sample, unknown_format
from tkds.collector.parse import parse_capture
from tkds.collector.records import Parsed

HTML = re.compile(r"<(?:!doctype|html|head|body|script|meta|div|a)[\s>]", re.I)
SHAPES = {
    "universal": "__UNIVERSAL_DATA_FOR_REHYDRATION__ page",
    "sigi": "SIGI_STATE page or dump",
    "next": "__NEXT_DATA__ page",
    "api": "web API JSON",
}


def sniff(sample: Sample) -> bool:
    """Any HTML (a saved page, or part of one), and any JSON the formats before this one left: a JSON
    fault (too deep, malformed) is then named as such, and JSON of no known shape as no known format."""
    if not sample.is_text:
        return False
    if sample.text.lstrip()[:1] in ("<", "{", "["):
        return True
    from tkds.collector.formats import table  # a table whose captions hold a tag is still a table

    return HTML.search(sample.text) is not None and not table.FORMAT.sniff(sample)


def _foreign(parsed: Parsed) -> bool:
    """JSON that held nothing TikTok's API answers with: no records, refusals, status or paging."""
    records = parsed.videos or parsed.authors or parsed.music or parsed.comments or parsed.refused
    paging = parsed.cursor is not None or parsed.has_more is not None or parsed.status
    return parsed.shape == "api" and not records and not paging


def read(path: Path, options: ImportOptions, report: FileReport) -> Iterator[Parsed]:
    parsed = parse_capture(path)
    if _foreign(parsed):
        raise unknown_format()
    report.notes.append(SHAPES.get(parsed.shape, "TikTok payload"))
    yield parsed


FORMAT = Format("tiktok-web", "TikTok pages and web API JSON", sniff, read)
