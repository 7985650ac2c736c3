"""Serve one or more apps in one process until SIGINT/SIGTERM (embedded Qdrant storage admits
one process, so the indexer and the query service may share one)."""

import asyncio
import contextlib
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from ragbus import logs


@dataclass(frozen=True)
class Served:
    app: FastAPI
    host: str
    port: int


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to `serve`, which stops every server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(apps: Sequence[Served]) -> None:
    """Run every app until SIGINT/SIGTERM, then stop them all."""
    servers = [
        _Server(
            uvicorn.Config(
                served.app,
                host=served.host,
                port=served.port,
                log_config=None,
                access_log=False,
                lifespan="on",
            )
        )
        for served in apps
    ]

    def stop_all() -> None:
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_all)
    await asyncio.gather(*(server.serve() for server in servers))


def run(apps: Sequence[Served], log_level: str) -> None:
    """Serve `apps` in this process until SIGINT/SIGTERM, logging JSON lines at `log_level`."""
    logs.configure(log_level)
    asyncio.run(serve(apps))
