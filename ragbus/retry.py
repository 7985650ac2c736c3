"""Bounded retries with exponential backoff and full jitter, for transient errors only."""

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


async def retry(
    operation: Callable[[], Awaitable[T]],
    *,
    transient: tuple[type[BaseException], ...],
    attempts: int = 5,
    base_delay: float = 0.5,
    max_delay: float = 30.0,
    what: str = "operation",
) -> T:
    """Run `operation`, retrying `transient` errors; the last error propagates, so the caller's
    ack policy leaves the message uncommitted for a later redelivery."""
    for attempt in range(1, attempts + 1):
        try:
            return await operation()
        except transient as exc:
            if attempt == attempts:
                raise
            delay = random.uniform(0, min(max_delay, base_delay * 2 ** (attempt - 1)))
            log.warning(
                "%s failed (attempt %d/%d), retrying in %.1fs: %s",
                what,
                attempt,
                attempts,
                delay,
                exc,
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
