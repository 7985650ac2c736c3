"""Composition root of the chunker service."""

import asyncio

from fastapi import FastAPI

from contracts.events import ChunksReady
from contracts.topics import CHUNKS_READY, DOCUMENT_UPLOADED
from ragbus.adapters.embedding.model_files import load_tokenizer
from ragbus.bus import Bus, create_broker
from ragbus.lag import lag_hooks
from ragbus.service import create_service_app

from .settings import ChunkerSettings, get_settings
from .subscriber import GROUP, register

__all__ = ["create_app", "get_settings"]


def create_app(
    shared: dict[str, object] | None = None, settings: ChunkerSettings | None = None
) -> FastAPI:
    settings = settings or get_settings()
    broker = create_broker(settings, "chunker")
    # Counting tokens for the split: no truncation, no padding.
    tokenizer = load_tokenizer(max_tokens=0, pad=False)
    sandbox = register(
        broker,
        Bus(broker, "chunker", {CHUNKS_READY: ChunksReady}, [DOCUMENT_UPLOADED]),
        settings,
        tokenizer,
    )

    async def stop_workers() -> None:
        await asyncio.to_thread(sandbox.close)

    watch_lag, stop_watching = lag_hooks(
        settings.kafka_bootstrap, GROUP, DOCUMENT_UPLOADED, settings.lag_interval_s
    )
    app = create_service_app(
        "chunker",
        broker=broker,
        started=[watch_lag],
        shutdown=[stop_workers, stop_watching],
        description="Health and metrics only.",
    )
    app.state.settings = settings
    app.state.broker = broker
    return app
