"""Rate limits, backoff, the circuit breaker, and cookie files: the collector's manners, unit by unit."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest

from tkds.collector.collect import read_cookies, read_proxies
from tkds.collector.media import write_cookie_file
from tkds.collector.politeness import CircuitBreaker, RateLimiter, backoff_s
from tkds.errors import TkdsError


def test_rate_limiter_spaces_each_host_and_jitter_only_lengthens() -> None:
    limiter = RateLimiter(rate=10, jitter=0.2, seed=1, clock=lambda: 100.0)  # time stands still
    waits = [limiter.reserve("www.tiktok.com") for _ in range(20)]
    gaps = [b - a for a, b in itertools.pairwise(waits)]
    assert waits[0] == 0 and all(0.1 <= gap <= 0.12 for gap in gaps)
    assert limiter.reserve("v16-webapp-prime.tiktok.com") < 0.01, "hosts have separate budgets"
    with pytest.raises(TkdsError, match="--rate must be positive"):
        RateLimiter(0)


def test_backoff_grows_and_retry_after_wins() -> None:
    assert backoff_s(0, "7") == 7.0
    assert backoff_s(3, "not a number") <= 0.5 * 2**3
    assert max(backoff_s(10) for _ in range(50)) <= 60.0


def test_circuit_breaker_pauses_then_gives_up_with_advice() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown_s=0.05, max_trips=2)

    async def fail(times: int) -> None:
        for _ in range(times):
            await breaker.failure("empty bodies")

    started = time.monotonic()
    asyncio.run(fail(3))
    assert breaker.trips == 1 and time.monotonic() - started >= 0.05
    breaker.success()
    asyncio.run(fail(2))
    assert breaker.trips == 1, "a success resets the count"
    asyncio.run(fail(1))
    assert breaker.trips == 2
    with pytest.raises(TkdsError, match="another --proxy"):
        asyncio.run(fail(3))


def test_cookie_files_round_trip_in_netscape_format(tmp_path: Path) -> None:
    cookies = [
        {"name": "msToken", "value": "abc", "domain": ".tiktok.com", "path": "/", "secure": True},
        {"name": "tt_chain_token", "value": "x1", "domain": ".tiktok.com", "path": "/", "httpOnly": True},
    ]
    path = tmp_path / "cookies.txt"
    write_cookie_file(cookies, path)
    read = {c["name"]: c for c in read_cookies(path)}
    assert read["msToken"]["value"] == "abc" and read["msToken"]["secure"] is True
    assert read["tt_chain_token"]["domain"] == ".tiktok.com"
    (tmp_path / "bad.txt").write_text("not a cookie file")
    with pytest.raises(TkdsError, match="Netscape format"):
        read_cookies(tmp_path / "bad.txt")


def test_proxies_come_as_urls_or_a_file_to_rotate(tmp_path: Path) -> None:
    listing = tmp_path / "proxies.txt"
    listing.write_text("http://127.0.0.1:1\n\nhttp://127.0.0.1:2\n")
    assert read_proxies(["http://a:1", str(listing)]) == [
        "http://a:1",
        "http://127.0.0.1:1",
        "http://127.0.0.1:2",
    ]
