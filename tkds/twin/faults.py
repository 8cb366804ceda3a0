"""Seeded faults, each with a rate: what TikTok does to scrapers, on demand.

`FaultSpec.parse("rate429=0.05,empty=0.02")` names the rates; `FaultDice.roll(kinds)` decides, for
one request, which fault (if any) it gets. The dice are one seeded stream, so a sequential run of
requests meets the same faults every time.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

from tkds.errors import TkdsError

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
