"""The parser sandbox with real worker processes: a call that crashes, hangs or eats memory fails
its document with a reason, and the next call gets a fresh worker."""

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from services.chunker.parsers import Limits, UnreadableDocument, extract_text
from services.chunker.sandbox import Sandbox, SandboxLimits

pytestmark = pytest.mark.unit

MIB = 1024 * 1024


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxLimits(timeout_s=2, memory_bytes=512 * MIB)) as running:
        yield running


def _unpicklable_error() -> None:
    raise ValueError(lambda: None)  # a lambda does not pickle


class _Unrebuildable(Exception):
    def __init__(self, code: int, detail: str) -> None:  # pickle calls it with one argument
        super().__init__(f"{code}: {detail}")


def _unrebuildable_error() -> None:
    raise _Unrebuildable(7, "detail")


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


CRASHED = "the parser crashed on this file (worker "


@pytest.mark.parametrize(
    ("function", "args", "error", "message"),
    [
        pytest.param(os.abort, (), UnreadableDocument, CRASHED + "killed by SIGABRT)", id="crash"),
        pytest.param(os._exit, (3,), UnreadableDocument, CRASHED + "exit code 3)", id="exit"),
        pytest.param(
            time.sleep, (60,), UnreadableDocument, "reading the file took over 2 s (the limit)",
            id="timeout",
        ),
        pytest.param(
            bytearray, (2048 * MIB,), UnreadableDocument,
            "reading the file needs over 512 MiB of memory (the limit)", id="memory",
        ),
        pytest.param(
            extract_text, (b"", "a.txt", None), UnreadableDocument, "file is empty",
            id="unreadable",
        ),
        pytest.param(
            extract_text, (b"x" * 1001, "a.txt", None, Limits(max_text_chars=1000)),
            UnreadableDocument, "over the 1,000-character limit", id="parser-limits",
        ),
        pytest.param(int, ("x",), ValueError, "invalid literal for int()", id="error"),
        pytest.param(
            _unpicklable_error, (), RuntimeError, "ValueError: <function", id="unpicklable"
        ),
        pytest.param(
            _unrebuildable_error, (), RuntimeError, "_Unrebuildable: 7: detail", id="unrebuildable"
        ),
    ],
)  # fmt: skip
def test_a_failing_call_fails_alone(
    sandbox: Sandbox,
    function: Callable[..., Any],
    args: tuple[Any, ...],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error) as caught:
        sandbox.run(function, *args)
    assert message in str(caught.value)
    assert sandbox.run(extract_text, b"Still reading.", "a.txt", None).text == "Still reading."


def test_a_worker_is_kept_between_calls_and_replaced_after_a_crash(sandbox: Sandbox) -> None:
    first = sandbox.run(os.getpid)
    assert sandbox.run(os.getpid) == first != os.getpid()
    with pytest.raises(UnreadableDocument):
        sandbox.run(os.abort)
    assert sandbox.run(os.getpid) not in (first, os.getpid())


def test_resident_objects_are_sent_once_per_worker() -> None:
    resident: list[int] = []
    with Sandbox(SandboxLimits(), resident=[resident]) as sandbox:
        sandbox.run(resident.append, 1)
        sandbox.run(resident.append, 2)
        assert sandbox.run(list.copy, resident) == [1, 2]  # the worker's copy, changed in place
    assert resident == []


@pytest.mark.parametrize(("workers", "distinct"), [(1, 1), (2, 2)])
def test_calls_beyond_the_workers_wait_for_one(workers: int, distinct: int) -> None:
    pids: list[int] = []
    with Sandbox(SandboxLimits(), workers=workers) as sandbox:
        threads = [
            threading.Thread(target=lambda: pids.append(sandbox.run(_pid_after, 0.5)))
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(pids) == 2 and len(set(pids)) == distinct


def test_close_stops_the_idle_workers() -> None:
    sandbox = Sandbox(SandboxLimits())
    pid = sandbox.run(os.getpid)
    sandbox.close()
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
