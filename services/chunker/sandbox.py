"""Parsing in worker processes with a memory limit and a timeout.

A parser library that segfaults, loops or eats memory on a hostile file would take the chunker
down with it, or stall its partition forever. In a worker such a file costs only that worker:
it is killed or has died, a fresh one takes its place on the next call, and the document fails
with `UnreadableDocument` saying what happened. Workers are persistent, so a normal document
only pays for its bytes going to the worker and its chunks coming back; objects every call
needs (the tokenizer) are sent once per worker, not with every call (`resident`).

The worker is `python -m services.chunker.sandbox FD`: a fresh interpreter (no fork of the
chunker's threads and event loop) that talks pickles over a socket pair. It contains failures,
it is not a security boundary: the worker runs as the chunker's user and the chunker trusts
its answers.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from . import parsers
from .parsers import UnreadableDocument

__all__ = ["Sandbox", "SandboxLimits", "SandboxUnavailable"]

log = logging.getLogger(__name__)

T = TypeVar("T")
MIB = 1024 * 1024
STARTUP_TIMEOUT_S = 60.0
_READY = b"ready"
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Per document: wall-clock seconds; per worker: bytes of data memory (RLIMIT_DATA).

    Parser limits are not the sandbox's: they are an argument of the function it runs.
    """

    timeout_s: float = 180.0
    memory_bytes: int = 2048 * MIB


class SandboxUnavailable(RuntimeError):
    """A worker process could not be started: a fault of the machine, not of the document."""


class _Pickler(pickle.Pickler):
    """Sends each resident object as its index: the worker has its own copy already."""

    def __init__(self, file: io.BytesIO, resident: dict[int, int]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._resident = resident

    def persistent_id(self, obj: Any) -> int | None:
        return self._resident.get(id(obj))


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, resident: Sequence[object]) -> None:
        super().__init__(file)
        self._resident = resident

    def persistent_load(self, pid: Any) -> object:
        return self._resident[pid]


def _exit_description(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class _Worker:
    """One worker process and its end of the socket pair."""

    def __init__(self, limits: SandboxLimits, resident: Sequence[object]) -> None:
        self.limits = limits
        ours, theirs = socket.socketpair()
        path = filter(None, (str(_SOURCE_ROOT), os.environ.get("PYTHONPATH")))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        except OSError as exc:
            ours.close()
            raise SandboxUnavailable(f"cannot start a parser worker: {exc}") from exc
        finally:
            theirs.close()
        self.connection = Connection(ours.detach())
        self.alive = True
        setup = (limits.memory_bytes, list(resident))
        try:
            self.connection.send_bytes(pickle.dumps(setup, protocol=pickle.HIGHEST_PROTOCOL))
            if not self.connection.poll(STARTUP_TIMEOUT_S):
                raise TimeoutError(f"no answer within {STARTUP_TIMEOUT_S:.0f} s")
            if self.connection.recv_bytes() != _READY:
                raise RuntimeError("unexpected greeting")
        except (OSError, EOFError, TimeoutError, RuntimeError) as exc:
            self.stop()
            raise SandboxUnavailable(f"a parser worker did not start: {exc}") from exc

    def call(self, request: bytes) -> Any:
        """Send one pickled call and wait for its outcome; a worker that dies, overruns or
        runs out of memory fails the document with the reason and is not used again."""
        try:
            self.connection.send_bytes(request)
            answered = self.connection.poll(self.limits.timeout_s)
            reply = self.connection.recv_bytes() if answered else None
        except (EOFError, OSError):
            self.stop()
            raise UnreadableDocument(
                f"the parser crashed on this file (worker {_exit_description(self.exit_code)})"
            ) from None
        if reply is None:
            self.stop(kill=True)
            raise UnreadableDocument(
                f"reading the file took over {self.limits.timeout_s:g} s (the limit): gave up"
            )
        outcome, value, retire = pickle.loads(reply)
        if retire:
            self.stop()
        if outcome == "unreadable":
            raise UnreadableDocument(value)
        if outcome == "error":
            raise value
        return value

    @property
    def exit_code(self) -> int:
        return self.process.wait()

    def stop(self, kill: bool = False) -> None:
        """Close the socket (an idle worker exits on it) and make sure the process is gone."""
        self.alive = False
        self.connection.close()
        if kill:
            self.process.kill()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Sandbox:
    """A pool of up to `workers` worker processes, started on first use.

    `run` blocks (call it in a thread); calls beyond `workers` wait for a free worker.
    """

    def __init__(
        self, limits: SandboxLimits, workers: int = 1, resident: Sequence[object] = ()
    ) -> None:
        self.limits = limits
        self._resident = list(resident)
        self._resident_ids = {id(obj): index for index, obj in enumerate(self._resident)}
        self._free = threading.BoundedSemaphore(workers)
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []

    def run(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """`function(*args, **kwargs)` in a worker. The function, its arguments and its result
        must pickle (module-level functions do). Raises what the function raised, or
        `UnreadableDocument` when the worker crashed, timed out or ran out of memory."""
        buffer = io.BytesIO()
        _Pickler(buffer, self._resident_ids).dump((function, args, kwargs))
        with self._free:
            worker = self._take()
            try:
                result: T = worker.call(buffer.getvalue())
                return result
            finally:
                if worker.alive:
                    with self._lock:
                        self._idle.append(worker)

    def _take(self) -> _Worker:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return _Worker(self.limits, self._resident)

    def close(self) -> None:
        """Stop the idle workers (a busy one exits when its call is over and it sees the
        socket closed, or with this process)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.stop()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------------------- the worker side


def _limit_memory(memory_bytes: int) -> None:
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, memory_bytes))
    except (ValueError, OSError) as exc:  # e.g. already lower, or not on this platform
        log.warning("parser worker runs without a memory limit: %s", exc)


def _answer(request: bytes, resident: Sequence[object], memory_bytes: int) -> tuple[bytes, bool]:
    """The pickled outcome of one call, and whether this worker should retire after it."""
    out_of_memory = f"reading the file needs over {memory_bytes // MIB} MiB of memory (the limit)"
    try:
        function, args, kwargs = _Unpickler(io.BytesIO(request), resident).load()
        outcome: tuple[str, Any, bool] = ("ok", function(*args, **kwargs), False)
    except UnreadableDocument as exc:
        if isinstance(exc.__cause__, MemoryError):
            outcome = ("unreadable", out_of_memory, True)
        else:
            outcome = ("unreadable", exc.reason, False)
    except MemoryError:
        outcome = ("unreadable", out_of_memory, True)
    except Exception as exc:
        outcome = ("error", exc, False)
    try:
        reply = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
        if outcome[0] == "error":
            pickle.loads(reply)  # some exceptions pickle but cannot be rebuilt
        return reply, outcome[2]
    except MemoryError:
        return pickle.dumps(("unreadable", out_of_memory, True)), True
    except Exception as exc:  # an exception that does not travel: its text does
        error = RuntimeError(f"{type(outcome[1]).__name__}: {outcome[1]} ({exc})")
        return pickle.dumps(("error", error, False)), False


def _serve(fd: int) -> None:
    from ragbus import logs

    logs.configure(os.environ.get("RAGBUS_LOG_LEVEL", "INFO"))
    # Ctrl-C in a terminal reaches the whole process group: the chunker stops its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    connection = Connection(fd)
    memory_bytes, resident = pickle.loads(connection.recv_bytes())
    _limit_memory(memory_bytes)
    parsers.preload()
    connection.send_bytes(_READY)
    while True:
        try:
            request = connection.recv_bytes()
        except (EOFError, OSError):
            return  # the chunker closed the socket or is gone
        reply, retire = _answer(request, resident, memory_bytes)
        connection.send_bytes(reply)
        if retire:  # a MemoryError may have left the heap in a poor state
            return


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
