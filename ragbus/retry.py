"""Bounded retries with exponential backoff and full jitter, for transient errors only."""

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

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

    def log_retry(state: RetryCallState) -> None:
        assert state.outcome is not None  # set before every sleep
        log.warning(
            "%s failed (attempt %d/%d), retrying in %.1fs: %s",
            what,
            state.attempt_number,
            attempts,
            state.upcoming_sleep,
            state.outcome.exception(),
        )

    retrying = AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=base_delay, max=max_delay),
        retry=retry_if_exception_type(transient),
        before_sleep=log_retry,
        reraise=True,
    )

    async def attempt() -> T:  # tenacity awaits only coroutine functions, not lambdas
        return await operation()

    return await retrying(attempt)
