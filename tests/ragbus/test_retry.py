import logging

import pytest

from ragbus.retry import retry

pytestmark = pytest.mark.unit


class Flaky:
    """Fails with the given errors in turn, then answers; `calls` counts the attempts."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


async def test_transient_errors_are_retried_and_logged_with_the_reason(caplog):
    flaky = Flaky(ConnectionError("refused"), TimeoutError("slow"))
    with caplog.at_level(logging.WARNING, logger="ragbus.retry"):
        # Callers pass lambdas that return an awaitable, not coroutine functions.
        result = await retry(
            lambda: flaky(), transient=(ConnectionError, TimeoutError), base_delay=0, what="publish"
        )
    assert (result, flaky.calls) == ("done", 3)
    assert [record.getMessage() for record in caplog.records] == [
        "publish failed (attempt 1/5), retrying in 0.0s: refused",
        "publish failed (attempt 2/5), retrying in 0.0s: slow",
    ]


async def test_other_errors_propagate_at_once():
    flaky = Flaky(ValueError("poison"))
    with pytest.raises(ValueError, match="poison"):
        await retry(flaky, transient=(ConnectionError,), base_delay=0)
    assert flaky.calls == 1


async def test_the_last_transient_error_propagates_when_the_attempts_run_out():
    flaky = Flaky(*(ConnectionError(f"try {n}") for n in range(1, 5)))
    with pytest.raises(ConnectionError, match="try 3"):
        await retry(flaky, transient=(ConnectionError,), attempts=3, base_delay=0)
    assert flaky.calls == 3


async def test_the_waits_are_jittered_below_an_exponential_bound(monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr("asyncio.sleep", _recording(waits))
    flaky = Flaky(*(ConnectionError() for _ in range(6)))
    with pytest.raises(ConnectionError):
        await retry(flaky, transient=(ConnectionError,), attempts=6, base_delay=1, max_delay=4)
    assert len(waits) == 5
    assert all(0 <= wait <= bound for wait, bound in zip(waits, [1, 2, 4, 4, 4], strict=True))


def _recording(waits: list[float]):
    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    return sleep
