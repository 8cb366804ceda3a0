"""Living counts: engagement keeps growing after the corpus was observed, as on TikTok.

A count at twin time t is its observed value times growth(t), a deterministic function of the
video's age, so two crawls at different times see two different, consistent snapshots.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from tkds.tiktok import rounded_count

TAU_S = 7 * 86400  # engagement arrives mostly in a video's first weeks


def _cumulative(age_s: float) -> float:
    a = max(age_s, 1.0) / TAU_S
    return 1 - math.exp(-a) + 0.1 * math.log1p(a)


def growth(create_time: int, observed_at: int, now: float) -> float:
    if now <= observed_at:
        return 1.0
    return _cumulative(now - create_time) / _cumulative(observed_at - create_time)


def grown_stats(exact: dict[str, int], factor: float) -> tuple[dict[str, int], dict[str, str]]:
    """(`stats`, `statsV2`): rounded ints and exact strings, as TikTok serves them."""
    grown = {key: int(value * factor) for key, value in exact.items()}
    return {k: rounded_count(v) for k, v in grown.items()}, {k: str(v) for k, v in grown.items()}


def follower_growth(observed_at: int, now: float) -> float:
    return 1.0 + 0.02 * math.log1p(max(0.0, now - observed_at) / 86400)


class TwinClock:
    """The twin's time: the corpus's observation time plus the elapsed wall time, times `speed`."""

    def __init__(self, observed_at: int, speed: float = 1.0, wall: Callable[[], float] = time.time) -> None:
        self.observed_at, self.speed, self._wall = observed_at, speed, wall
        self._start = wall()
        self.offset_s = 0.0

    def now(self) -> float:
        return self.observed_at + (self._wall() - self._start) * self.speed + self.offset_s

    def advance(self, seconds: float) -> None:
        """Jump forward (tests use this to expire URLs or age counts)."""
        self.offset_s += seconds
