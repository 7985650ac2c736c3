"""Serve one or more services' apps in one process (embedded Qdrant storage allows one process)."""

import asyncio
import contextlib
import importlib
import signal
from collections.abc import Iterator, Sequence
from typing import Protocol

import uvicorn
from fastapi import FastAPI

from ragbus import logs
from ragbus.settings import CommonSettings

SERVICES = ("ingest", "chunker", "embedder", "indexer", "query", "status")


class ServiceMain(Protocol):
    def create_app(self, shared: dict[str, object]) -> FastAPI: ...

    def get_settings(self) -> CommonSettings: ...


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to `serve`, which stops every server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _main_module(name: str) -> ServiceMain:
    if name not in SERVICES:
        raise SystemExit(f"unknown service {name!r}; choose from {', '.join(SERVICES)}")
    module: ServiceMain = importlib.import_module(f"services.{name}.main")
    return module


async def serve(names: Sequence[str]) -> None:
    """Run the named services until SIGINT/SIGTERM; `shared` lets them share one store."""
    shared: dict[str, object] = {}
    servers = []
    for name in names:
        module = _main_module(name)
        settings = module.get_settings()
        logs.configure(settings.log_level)
        app = module.create_app(shared)
        port = getattr(settings, "port")  # noqa: B009 - every service's settings have a port
        config = uvicorn.Config(
            app, host=settings.host, port=port, log_config=None, access_log=False, lifespan="on"
        )
        servers.append(_Server(config))

    def stop_all() -> None:
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_all)
    await asyncio.gather(*(server.serve() for server in servers))


def main(names: Sequence[str]) -> None:
    asyncio.run(serve(names))
