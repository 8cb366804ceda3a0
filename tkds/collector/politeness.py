"""Being a good citizen, and surviving when TikTok is not: per-host rate limits, backoff, a breaker."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable

from tkds.errors import TkdsError


class RateLimiter:
    """At most `rate` requests a second to each host, with jitter; shared by threads and tasks."""

    def __init__(
        self,
        rate: float,
        jitter: float = 0.2,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise TkdsError(f"--rate must be positive (got {rate})")
        self.interval = 1.0 / rate
        self.jitter = jitter
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._clock = clock

    def reserve(self, host: str) -> float:
        """Book the host's next slot; returns how long to wait for it."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next.get(host, now))
            # Jitter only ever lengthens the gap, so the rate stays a ceiling.
            self._next[host] = slot + self.interval * (1 + self.jitter * self._random.random())
            return slot - now

    async def wait(self, host: str) -> None:
        await asyncio.sleep(self.reserve(host))

    def wait_blocking(self, host: str) -> None:
        time.sleep(self.reserve(host))


def backoff_s(attempt: int, retry_after: str | None = None, base: float = 0.5, cap: float = 60.0) -> float:
    """Exponential backoff with full jitter; a Retry-After header, when given, wins."""
    if retry_after:
        try:
            return min(cap, float(retry_after))
        except ValueError:
            pass
    return random.uniform(0, min(cap, base * 2**attempt))


class CircuitBreaker:
    """Pauses after `threshold` empty or blocked answers in a row; gives up after `max_trips` pauses."""

    def __init__(self, threshold: int = 5, cooldown_s: float = 20.0, max_trips: int = 3) -> None:
        self.threshold, self.cooldown_s, self.max_trips = threshold, cooldown_s, max_trips
        self.in_a_row = 0
        self.trips = 0

    def success(self) -> None:
        self.in_a_row = 0

    async def failure(self, reason: str) -> None:
        self.in_a_row += 1
        if self.in_a_row < self.threshold:
            return
        self.trips += 1
        self.in_a_row = 0
        if self.trips > self.max_trips:
            raise TkdsError(
                f"TikTok answered {reason} {self.threshold} times in a row, {self.max_trips} pauses running; "
                "wait a while, or pass another --proxy or your browser's --cookies, then re-run to resume"
            )
        await asyncio.sleep(self.cooldown_s * self.trips)
