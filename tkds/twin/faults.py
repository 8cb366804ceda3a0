"""Seeded faults, each with a rate: what TikTok does to scrapers, on demand.

`FaultSpec.parse("rate429=0.05,empty=0.02")` names the rates; `FaultDice.roll(kinds)` decides, for
one request, which fault (if any) it gets. The dice are one seeded stream, so a sequential run of
requests meets the same faults every time.

`drop_FIELD=RATE` (stats, author, music, hashtags, media) is payload drift on demand: that share of the
items the twin serves (pages, API lists, item detail) lack the field, as when TikTok changes a format.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field

from tkds.errors import TkdsError

CAPTION_TAG = re.compile(r"#\w+")

FAULTS = {
    "rate429": "429 Too Many Requests with Retry-After",
    "error5xx": "500 or 503",
    "empty": "HTTP 200 with an empty body",
    "blocked": "statusCode 10204: IP blocked",
    "private": "statusCode 10216: private post",
    "challenge": "a 'Please wait...' JS challenge page",
    "slow": "a response delayed by slow_s seconds",
    "truncate": "media cut off mid-body",
    "reset": "the connection reset at CONNECT",
}
# What each drop fault takes out of a served item. Values are emptied rather than keys deleted where
# the twin's own page builders read them, so every page format and endpoint still answers.
DROPPABLE = {
    "stats": "no stats or statsV2",
    "author": "an author without its id",
    "music": "an empty music object",
    "hashtags": "no challenges, textExtra or contents, and no #words in the caption",
    "media": "no play or download URL (a photo post: no images)",
}
FAULTS.update({f"drop_{name}": f"items served with {what}" for name, what in DROPPABLE.items()})
PAGE_FAULTS = ("reset", "rate429", "error5xx", "empty", "challenge", "slow")
VIDEO_PAGE_FAULTS = (*PAGE_FAULTS, "blocked", "private")
API_FAULTS = ("rate429", "error5xx", "empty", "slow")
MEDIA_FAULTS = ("rate429", "error5xx", "truncate", "slow")


@dataclass(frozen=True)
class FaultSpec:
    rates: dict[str, float] = field(default_factory=dict)
    slow_s: float = 1.5
    retry_after_s: int = 1

    @classmethod
    def parse(cls, spec: str | dict[str, float] | None) -> FaultSpec:
        if not spec:
            return cls()
        if isinstance(spec, dict):
            pairs = list(spec.items())
        else:
            try:
                pairs = [
                    (k.strip(), float(v)) for k, v in (part.split("=") for part in spec.split(",") if part)
                ]
            except ValueError:
                raise TkdsError(
                    f"--faults {spec!r} is not NAME=RATE[,NAME=RATE...], e.g. rate429=0.05"
                ) from None
        options = {k: v for k, v in pairs if k in ("slow_s", "retry_after_s")}
        rates = {k: v for k, v in pairs if k not in options}
        unknown = sorted(set(rates) - set(FAULTS))
        drops = [name.removeprefix("drop_") for name in unknown if name.startswith("drop_")]
        if drops:
            raise TkdsError(f"cannot drop {', '.join(drops)}; droppable fields: {', '.join(DROPPABLE)}")
        if unknown:
            raise TkdsError(f"unknown fault {', '.join(unknown)}; known: {', '.join(FAULTS)}")
        bad = [k for k, v in rates.items() if not 0 <= v <= 1]
        if bad:
            raise TkdsError(f"fault rates must be within 0..1 ({', '.join(bad)})")
        return cls(
            rates=dict(rates),
            slow_s=float(options.get("slow_s", cls.slow_s)),
            retry_after_s=int(options.get("retry_after_s", cls.retry_after_s)),
        )


class FaultDice:
    def __init__(self, spec: FaultSpec, seed: int) -> None:
        self.spec = spec
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.fired: dict[str, int] = dict.fromkeys(FAULTS, 0)

    def roll(self, kinds: tuple[str, ...]) -> str | None:
        """The fault this request gets, if any; kinds not configured cost no draw."""
        with self._lock:
            for kind in kinds:
                rate = self.spec.rates.get(kind, 0.0)
                if rate and self._random.random() < rate:
                    self.fired[kind] += 1
                    return kind
        return None

    def drop_fields(self, item: dict) -> dict:
        """`item` (a served copy) without the fields the drop faults take from it this time."""
        for name in DROPPABLE:
            if self.roll((f"drop_{name}",)):
                _DROPS[name](item)
        return item


def _drop_stats(item: dict) -> None:
    item["stats"] = {}
    item.pop("statsV2", None)


def _drop_author(item: dict) -> None:
    author = item.get("author")
    if isinstance(author, dict):
        item["author"] = {**author, "id": ""}


def _drop_music(item: dict) -> None:
    item["music"] = {}


def _drop_hashtags(item: dict) -> None:
    for key in ("challenges", "textExtra", "contents"):
        item.pop(key, None)
    item["desc"] = " ".join(CAPTION_TAG.sub("", item.get("desc", "")).split())


def _drop_media(item: dict) -> None:
    if isinstance(item.get("imagePost"), dict):  # a photo post: its images are its media
        item["imagePost"] = {**item["imagePost"], "images": []}
    elif isinstance(item.get("video"), dict):
        item["video"].update(playAddr="", downloadAddr="")


_DROPS = {
    "stats": _drop_stats,
    "author": _drop_author,
    "music": _drop_music,
    "hashtags": _drop_hashtags,
    "media": _drop_media,
}
