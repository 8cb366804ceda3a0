"""Honest values from exports and tables: rounded counts, durations, times and ids that lost digits.

Tools and published tables write TikTok's numbers as display text ("304.9K", "2,5 K", "00:31") and
ids as floats (`7.506832745952218e+18`). Every reader goes through these functions, so a rounded
count is always flagged, and an id that may have lost digits is never stored as if it were exact.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from tkds import ids

SUFFIXES = {"k": 10**3, "m": 10**6, "b": 10**9, "t": 10**12}
ROUNDED = re.compile(r"([0-9]+(?:[.,][0-9]+)?)\s*([kmbt])", re.I)
GROUPED = re.compile(r"[0-9]{1,3}(?:([,. \u00a0\u202f])[0-9]{3})+")
FLOAT_EXACT_DIGITS = 15  # a float64 holds every integer below 10^15 exactly
CLOCK = re.compile(r"(?:([0-9]+):)?([0-9]{1,2}):([0-9]{1,2}(?:\.[0-9]+)?)")
SECONDS = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*s?", re.I)
VIDEO_URL = re.compile(r"/(?:video|photo|v)/([0-9]{1,24})(?:[/?#.]|$)")
USER_URL = re.compile(r"/@([A-Za-z0-9_.]{1,24})(?:[/?#]|$)")
MUSIC_URL = re.compile(r"/music/[^/?#]*?-?([0-9]{6,24})(?:[/?#]|$)")


class LossyId(ValueError):
    """An id written as a float: its last digits may be lost, so it must not be stored."""


def count(value: Any) -> tuple[int | None, bool]:
    """A non-negative count and whether it was rounded display text ("304.9K", "1.4M", "2,5 K").

    Plain integers, integral floats and digit groups ("1,234,567") are exact; anything else is None.
    """
    if value is None or isinstance(value, bool):
        return None, False
    if isinstance(value, int):
        return (value, False) if 0 <= value < 2**63 else (None, False)
    if isinstance(value, float | Decimal):
        number = float(value)
        if not math.isfinite(number) or number < 0 or number >= 2**63 or number != int(number):
            return None, False
        return int(number), abs(number) >= 10**FLOAT_EXACT_DIGITS
    if not isinstance(value, str):
        return None, False
    text = value.strip().replace("\u00a0", " ")
    if match := ROUNDED.fullmatch(text):
        number = float(match[1].replace(",", "."))
        return round(number * SUFFIXES[match[2].lower()]), True
    if text.isascii() and text.isdigit():
        return count(int(text))
    if GROUPED.fullmatch(text):
        return count(int(re.sub(r"[^0-9]", "", text)))
    try:
        return count(float(text))
    except ValueError:
        return None, False


def duration_s(value: Any) -> float | None:
    """Seconds from a number, "31", "31s", "00:31" (mm:ss) or "1:02:03" (h:mm:ss); None otherwise."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if match := CLOCK.fullmatch(text):
            hours, minutes, rest = match.groups()
            seconds = int(hours or 0) * 3600 + int(minutes) * 60 + float(rest)
        elif match := SECONDS.fullmatch(text):
            seconds = float(match[1])
        else:
            return None
    else:
        return None
    return seconds if math.isfinite(seconds) and 0 <= seconds < 10**7 else None


def unix_time(value: Any) -> int | None:
    """Unix seconds from an int, a digit string (seconds or milliseconds) or an ISO 8601 time (UTC
    unless it says otherwise); None otherwise."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int | float | Decimal):
        seconds = float(value)
        if not math.isfinite(seconds):
            return None
        return int(seconds / 1000 if seconds > 10**11 else seconds)
    if not isinstance(value, str):
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def utc_datetime(seconds: int | None) -> datetime | None:
    """A unix time as the store's naive UTC datetime; None when absent or outside datetime's years."""
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
    except (ValueError, OverflowError, OSError):
        return None


def observed_at(value: Any) -> datetime | None:
    """A scrape time (unix or ISO 8601) as the store's naive UTC datetime, or None."""
    return utc_datetime(unix_time(value))


def exact_id(value: Any, kind: str = "video") -> str | None:
    """An id as its exact digit string; None when absent.

    A float (or float text such as "7.506832745952218e+18") is exact only when it is integral and below
    10^15, where every float64 integer is exact; a larger one is `LossyId`. Anything else that is not
    digits is `tkds.ids.InvalidId`.
    """
    if value is None or value == "":
        return None
    if isinstance(value, float | Decimal) or (
        isinstance(value, str) and value.strip() and any(c in value for c in ".eE")
    ):
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            return ids.check_id(value, kind)
        if not number.is_finite() or number != number.to_integral_value() or number < 0:
            return ids.check_id(value, kind)
        if number >= 10**FLOAT_EXACT_DIGITS:
            shown = ids.preview(str(value))
            raise LossyId(f"{kind} id {shown}: written as a float, so its last digits are lost")
        return ids.check_id(int(number), kind)
    if isinstance(value, str):
        value = value.strip()
    return ids.check_id(value, kind)


def video_id_from_url(url: Any) -> str | None:
    """The video id in a TikTok video or photo URL (…/@user/video/ID, …/photo/ID), or None."""
    match = VIDEO_URL.search(url) if isinstance(url, str) else None
    return match[1] if match else None


def username_from_url(url: Any) -> str | None:
    match = USER_URL.search(url) if isinstance(url, str) else None
    return match[1] if match else None


def music_id_from_url(url: Any) -> str | None:
    """The sound id in a TikTok music URL (…/music/Title-ID), or None."""
    match = MUSIC_URL.search(url) if isinstance(url, str) else None
    return match[1] if match else None
