"""Hashtags from every shape TikTok and the tools around it write them in, through one function.

Shapes, in the order a caller passes them (the first that names any tag wins):
- `textExtra` entries, with `type` 1 or without `type` (2026 payloads drop it); mentions (type 0, or a
  `userId`/`userUniqueId` without a `hashtagName`) are not tags;
- `challenges` (`title`) and export lists (`[{"name": …}]`, `["a", "b"]`);
- strings: "a, b, c", "#a #b", "['a', 'b']".
Last, when no shape names a tag, the `#words` of the caption itself.
"""

from __future__ import annotations

import re
from typing import Any

from tkds.collector.records import storable

CAPTION_TAG = re.compile(r"#(\w+)")
SEPARATORS = re.compile(r"[\s,;|\[\]'\"]+")
MAX_TAG = 100  # TikTok's own limit is shorter; longer "tags" are noise
TAG_KEYS = ("hashtagName", "title", "name", "hashtag_name", "tag")


def _from_entry(entry: dict) -> str | None:
    if "type" in entry and entry.get("type") not in (1, "1"):
        return None
    for key in TAG_KEYS:
        value = entry.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


def _names(shape: Any) -> list[str]:
    if isinstance(shape, str):
        return [part for part in SEPARATORS.split(shape) if part.strip("#")]
    if isinstance(shape, dict):
        name = _from_entry(shape)
        return [name] if name else []
    if isinstance(shape, list | tuple):
        names = []
        for entry in shape:
            if isinstance(entry, str):
                names += _names(entry)
            elif isinstance(entry, dict) and (name := _from_entry(entry)):
                names.append(name)
        return names
    return []


def _clean(names: list[str]) -> list[str]:
    tags = (storable(name).strip().lstrip("#").strip().lower() for name in names)
    return list(dict.fromkeys(tag for tag in tags if tag and len(tag) <= MAX_TAG))


def hashtags(*shapes: Any, caption: Any = None) -> list[str]:
    """Lower-case tags without '#', first occurrence first, from the first shape that names any.

    `caption`'s `#words` are the last resort, used only when no shape names a tag.
    """
    for shape in shapes:
        if tags := _clean(_names(shape)):
            return tags
    if isinstance(caption, str):
        return _clean(CAPTION_TAG.findall(caption))
    return []


def item_hashtags(item: dict) -> list[str]:
    """A web itemStruct's tags: its caption's `textExtra` (top level or under `contents[]`), else its
    `challenges` (SIGI-era items carry the account's whole list there), else the caption's `#words`."""
    extras = list(item.get("textExtra") or []) if isinstance(item.get("textExtra"), list) else []
    for content in item.get("contents") or []:
        if isinstance(content, dict) and isinstance(content.get("textExtra"), list):
            extras += content["textExtra"]
    return hashtags(extras, item.get("challenges"), caption=item.get("desc"))
