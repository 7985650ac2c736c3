"""Composition root of the embedder service."""

from fastapi import FastAPI

from contracts.events import VectorsReady
from contracts.topics import CHUNKS_READY, VECTORS_READY
from ragbus.adapters.embedding import create_backend
from ragbus.bus import Bus, create_broker
from ragbus.lag import lag_hooks
from ragbus.ports import EmbeddingBackend, EmbeddingUnavailable
from ragbus.service import create_service_app

from .settings import EmbedderSettings, get_settings
from .subscriber import GROUP, register

__all__ = ["create_app", "get_settings"]


def create_app(
    shared: dict[str, object] | None = None,
    settings: EmbedderSettings | None = None,
    backend: EmbeddingBackend | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    backend = backend or create_backend(
        settings.tei_url,
        threads=settings.embed_threads,
        batch_size=settings.embed_batch_size,
        model=settings.embed_model,
    )
    broker = create_broker(settings, "embedder")
    register(
        broker,
        Bus(
            broker,
            "embedder",
            {VECTORS_READY: VectorsReady},
            [CHUNKS_READY],
            transient=(EmbeddingUnavailable,),
        ),
        settings,
        backend,
    )

    async def close() -> None:
        backend.close()

    watch_lag, stop_watching = lag_hooks(
        settings.kafka_bootstrap, GROUP, CHUNKS_READY, settings.lag_interval_s
    )
    app = create_service_app(
        "embedder",
        broker=broker,
        started=[watch_lag],
        shutdown=[close, stop_watching],
        description="Health and metrics only.",
    )
    app.state.settings = settings
    app.state.broker = broker
    return app
