"""A token bucket per API key: a client may burst, then gets a steady rate, then 429s.

Buckets live in the process, so with N replicas behind a load balancer a key gets up to N times
the configured rate. Only keys that authenticated get a bucket, so the table holds at most one
bucket per configured key however many wrong keys are tried.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class TokenBucket:
    """`burst` tokens at most, refilled at `rate` per second; each request takes one."""

    rate: float
    burst: int
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Take a token: 0.0 when one was there, else the seconds until one will be."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """Token buckets by key; `rate` 0 admits everything."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate < 0 or burst < 1:
            raise ValueError(f"a rate limit needs rate >= 0 and burst >= 1, got {rate}, {burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def admit(self, key: str) -> float:
        """0.0 when `key` may make a request now, else the seconds it has to wait."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self.burst, now)
        return bucket.take(now)

    def describe(self) -> str:
        return f"{self.rate:g} requests/s per API key (burst {self.burst})"


def retry_after(wait_s: float) -> str:
    """A `Retry-After` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait_s)))
