"""Payload drift: which expected fields a run's items lacked, and which keys it had never seen.

TikTok changes its payloads often; a changed page otherwise gives rows full of NULLs that nobody
notices. `FieldCensus.add(parsed, source)` counts, per source (the stage or import format: "video
pages", "item lists", "import:tiktok-web") and page format (`Parsed.shape`), the items seen, the items
missing each expected field (`FIELDS`), and the top-level keys of the items' raw dicts that are not in
TikTok's itemStruct (`ITEM_KEYS`). The census goes to `crawl_runs.counts["fields"]`, so a later run
compares with it: `warnings(history(store))` gives one line per field that used to be present and is
now missing in most items.

"Used to be present" means: the format always carries it (`ALWAYS_CARRIED`: stats, author, sound and
media on TikTok's own pages and API lists), or it was present in most items of a recent run of the
same source and format. A field the format never had (a table without sounds) is never warned about.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tkds.collector.records import Parsed

if TYPE_CHECKING:
    from tkds.collector.store import Store

FIELDS = ("stats", "author", "music", "hashtags", "media")
FIELD_LABELS = {"media": "media URLs"}  # what a warning calls a field, where its name is too short
WEB_SHAPES = ("universal", "sigi", "next", "api")
# What every item of TikTok's own payloads carries; hashtags are not here (many posts have none).
ALWAYS_CARRIED = {shape: ("stats", "author", "music", "media") for shape in WEB_SHAPES}

# The top-level keys of an itemStruct in every era (shared/research/tiktok-web.md §2.1, the real
# captures in shared/fixtures/tiktok, SIGI's ItemModule flattening and the twin's items).
ITEM_KEYS = frozenset((
    "id", "desc", "createTime", "scheduleTime", "type",  # identity ("type": search results)
    "video", "author", "authorStats", "authorStatsV2", "music", "stats", "statsV2", "imagePost",
    "challenges", "textExtra", "contents",
    "authorId", "authorSecId", "authorPrivate", "nickname", "avatarThumb",  # SIGI's flattened author
    "isAd", "locationCreated", "poi", "privateItem", "secret", "forFriend", "digged", "collected",
    "itemCommentStatus", "duetEnabled", "stitchEnabled", "shareEnabled", "duetDisplay", "stitchDisplay",
    "indexEnabled", "originalItem", "officalItem", "takeDown", "itemMute", "showNotPass", "vl1",
    "downloadSetting", "stickersOnItem", "effectStickers", "warnInfo", "duetInfo", "comments",
    "channelTags", "capcutAnchors", "capcutAnchorsOriginal", "isActivityItem",
    "diversificationLabels", "diversificationId", "suggestedWords", "keywordTags", "textLanguage",
    "contentLocation", "CategoryType", "AIGCDescription", "IsAigc", "moderationAigcLabelType",
    "creatorAIComment", "isContentClassified",
))  # fmt: skip

WARN_SHARE = 0.5  # a field missing in more than this share of a run's items is a drift
MIN_ITEMS = 5  # fewer items than this say nothing about a format
MAX_KEYS = 100  # distinct unseen keys kept per source and format; the rest are only counted
MAX_KEY_SETS = 64  # distinct sets of unseen keys counted as sets before they are counted key by key
MAX_KEY_LENGTH = 80  # a hostile payload's megabyte-long key is kept as its prefix
HISTORY_RUNS = 20  # the recent crawl_runs rows a run compares with


@dataclass
class ShapeCount:
    """One source and format's census: items, items missing each field, unseen top-level keys."""

    items: int = 0
    missing: Counter = field(default_factory=Counter)
    # An item's unseen keys as a set -> items with exactly those: the items of one format mostly share
    # one, so counting sets costs one hash an item; `unseen_keys()` folds them into per-key counts.
    key_sets: Counter = field(default_factory=Counter)
    keys: Counter = field(default_factory=Counter)  # unseen key -> items that had it (folded)
    keys_untracked: int = 0  # occurrences of distinct keys beyond MAX_KEYS

    def add_keys(self, unseen: frozenset) -> None:
        if unseen in self.key_sets or (len(self.key_sets) < MAX_KEY_SETS and len(unseen) <= MAX_KEYS):
            self.key_sets[unseen] += 1
        else:
            self._count(unseen, 1)

    def unseen_keys(self) -> Counter:
        """Unseen key -> items that had it, at most MAX_KEYS distinct keys."""
        for unseen, items in self.key_sets.items():
            self._count(unseen, items)
        self.key_sets.clear()
        return self.keys

    def _count(self, unseen: frozenset, items: int) -> None:
        for key in sorted(unseen):  # sorted: the same keys are kept whatever the set's order
            key = key[:MAX_KEY_LENGTH]
            if key in self.keys or len(self.keys) < MAX_KEYS:
                self.keys[key] += items
            else:
                self.keys_untracked += items

    def as_dict(self) -> dict:
        return {
            "items": self.items,
            "missing": {name: self.missing[name] for name in FIELDS},
            "unseen_keys": dict(self.unseen_keys().most_common()),
            "unseen_keys_untracked": self.keys_untracked,
        }


class FieldCensus:
    """What a run's items held, per source and page format."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], ShapeCount] = {}

    def add(self, parsed: Parsed, source: str) -> None:
        """Count the videos of one page, API list or import batch; O(items and their top-level keys)."""
        if not parsed.videos:
            return
        shape = parsed.shape or "unknown"
        count = self.counts.setdefault((source, shape), ShapeCount())
        with_stats = {s.video_id for s in parsed.video_stats if s.plays is not None or s.likes is not None}
        known = ITEM_KEYS if shape in WEB_SHAPES else frozenset()  # other formats: against history
        missing = count.missing
        for video in parsed.videos:
            count.items += 1
            if video.id not in with_stats:
                missing["stats"] += 1
            if video.author_id is None:
                missing["author"] += 1
            if video.music_id is None:
                missing["music"] += 1
            if not video.hashtags:
                missing["hashtags"] += 1
            if not (video.images if video.kind == "photo" else video.play_url or video.images):
                missing["media"] += 1
            if isinstance(video.raw, dict):
                count.add_keys(frozenset(video.raw.keys() - known))

    def as_dict(self) -> dict:
        """{source: {shape: counts}}: what `crawl_runs.counts["fields"]` keeps."""
        out: dict[str, dict] = {}
        for (source, shape), count in sorted(self.counts.items()):
            out.setdefault(source, {})[shape] = count.as_dict()
        return out

    def warnings(self, previous: dict[tuple[str, str], list[dict]]) -> list[str]:
        """One line per (source, format, field) that used to be present and is missing in most items,
        and per (source, format) whose items mostly carry keys never seen before."""
        lines = []
        for (source, shape), count in sorted(self.counts.items()):
            if count.items < MIN_ITEMS:
                continue
            before = previous.get((source, shape), [])
            label = source if shape in (source.rsplit(":", 1)[-1], "unknown") else f"{source} ({shape})"
            cause = _cause(source, shape)
            for name in FIELDS:
                share = count.missing[name] / count.items
                if share > WARN_SHARE and _used_to_be_present(name, shape, before):
                    what = FIELD_LABELS.get(name, name)
                    lines.append(
                        f"{label}: {what} missing in {_percent(share)} % of {count.items} items; {cause}"
                    )
            new_keys = _new_keys(count, shape, before)
            if new_keys:
                names = ", ".join(_printable(key) for key in new_keys[:5]) + (
                    f" and {len(new_keys) - 5} more" if len(new_keys) > 5 else ""
                )
                share = count.unseen_keys()[new_keys[0]] / count.items
                lines.append(
                    f"{label}: keys never seen before ({names}) in up to {_percent(share)} % of "
                    f"{count.items} items; {cause}"
                )
        return lines


def _cause(source: str, shape: str) -> str:
    if source.startswith("import:") and shape not in WEB_SHAPES:
        return "its exporter may have changed its format"
    return "TikTok may have changed its page format"


def _printable(key: str) -> str:
    """A payload's key as one short line of ASCII: keys are untrusted input."""
    return key[:40].encode("unicode_escape").decode("ascii") + ("…" if len(key) > 40 else "")


def _percent(share: float) -> int:
    """A share as a whole percentage, never rounded up to 100 when some items had the field."""
    return int(share * 100)


def _used_to_be_present(name: str, shape: str, before: list[dict]) -> bool:
    if name in ALWAYS_CARRIED.get(shape, ()):
        return True
    for census in before:
        items = census.get("items") or 0
        missing = (census.get("missing") or {}).get(name)
        if items >= MIN_ITEMS and isinstance(missing, int) and missing / items <= WARN_SHARE:
            return True
    return False


def _new_keys(count: ShapeCount, shape: str, before: list[dict]) -> list[str]:
    """Unseen keys in most items that no earlier run of this source and format reported either, most
    common first. A format other than TikTok's is compared only with a complete earlier key list."""
    seen: set[str] = set()
    for census in before:
        seen.update(census.get("unseen_keys") or {})
    complete = any(
        (census.get("items") or 0) >= MIN_ITEMS
        and "unseen_keys" in census
        and not census.get("unseen_keys_untracked")
        for census in before
    )
    if shape not in WEB_SHAPES and not complete:
        return []  # no key list of its own yet: this run's becomes the baseline
    keys = count.unseen_keys().most_common()
    return [key for key, n in keys if key not in seen and n / count.items > WARN_SHARE]


def history(store: Store) -> dict[tuple[str, str], list[dict]]:
    """The censuses of the last HISTORY_RUNS runs in `store`'s crawl_runs, per (source, shape), newest
    first; rows without one (older runs) or with unreadable counts are passed over."""
    rows = store.db.execute(
        "SELECT counts FROM crawl_runs ORDER BY started_at DESC LIMIT ?", [HISTORY_RUNS]
    ).fetchall()
    found: dict[tuple[str, str], list[dict]] = {}
    for (counts,) in rows:
        try:
            fields = json.loads(counts).get("fields") if counts else None
        except (ValueError, AttributeError):
            continue
        if not isinstance(fields, dict):
            continue
        for source, shapes in fields.items():
            for shape, census in (shapes if isinstance(shapes, dict) else {}).items():
                if isinstance(census, dict):
                    found.setdefault((source, shape), []).append(census)
    return found
