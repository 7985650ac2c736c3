"""Composition root of the indexer service."""

from fastapi import FastAPI

from contracts.events import IndexPromoted
from contracts.topics import INDEX_PROMOTED, VECTORS_READY
from ragbus.adapters.store import shared_store
from ragbus.bus import Bus, create_broker
from ragbus.lag import lag_hooks
from ragbus.service import create_service_app

from .handlers import TRANSIENT
from .routes import router
from .settings import IndexerSettings, get_settings
from .subscriber import GROUP, register

__all__ = ["create_app", "get_settings"]


def create_app(
    shared: dict[str, object] | None = None, settings: IndexerSettings | None = None
) -> FastAPI:
    """`shared["store"]` lets the query service in the same process use the same storage."""
    settings = settings or get_settings()
    runner, close = shared_store(shared, settings)
    broker = create_broker(settings, "indexer")
    register(
        broker,
        Bus(
            broker, "indexer", {INDEX_PROMOTED: IndexPromoted}, [VECTORS_READY], transient=TRANSIENT
        ),
        settings,
        runner,
    )
    watch_lag, stop_watching = lag_hooks(
        settings.kafka_bootstrap, GROUP, VECTORS_READY, settings.lag_interval_s
    )
    app = create_service_app(
        "indexer",
        broker=broker,
        routers=[router],
        started=[watch_lag],
        shutdown=[*close, stop_watching],
        description="Index vectors into Qdrant and promote documents.",
    )
    app.state.settings = settings
    app.state.broker = broker
    app.state.store = runner
    return app
