"""Every service by name: what `ragbus serve`, the supervisor and the AsyncAPI generator start,
without import strings."""

import asyncio
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from ragbus.adapters.stores import open_store
from ragbus.runner import Served, run
from ragbus.settings import HttpSettings
from services.chunker import main as chunker
from services.embedder import main as embedder
from services.indexer import main as indexer
from services.ingest import main as ingest
from services.query import main as query
from services.status import main as status

SERVICES: dict[str, ModuleType] = {
    "ingest": ingest,
    "chunker": chunker,
    "embedder": embedder,
    "indexer": indexer,
    "query": query,
    "status": status,
}


def settings_of(name: str) -> HttpSettings:
    """The service's settings, as its environment gives them (every service serves HTTP)."""
    settings: HttpSettings = SERVICES[name].get_settings()
    return settings


def port_of(name: str) -> int:
    port: int = getattr(settings_of(name), "port")  # noqa: B009 - every service has a port
    return port


def main(names: Sequence[str]) -> None:
    """Serve the named services in this process. The indexer and the query service in one
    process share one store (embedded storage admits one opener), closed once both stopped."""
    unknown = [name for name in names if name not in SERVICES]
    if unknown:
        raise SystemExit(f"unknown service {unknown[0]!r}; choose from {', '.join(SERVICES)}")
    adapters: dict[str, Any] = {}
    store = None
    if {"indexer", "query"} <= set(names):
        store = open_store(indexer.get_settings())
        adapters = {
            "indexer": indexer.IndexerAdapters(store=store),
            "query": query.QueryAdapters(store=store),
        }
    try:
        apps = [
            Served(
                SERVICES[name].create_app(settings_of(name), adapters.get(name)),
                settings_of(name).host,
                port_of(name),
            )
            for name in names
        ]
        run(apps, settings_of(names[0]).log_level)
    finally:
        if store is not None:
            asyncio.run(store.close())
