"""Composition root of the chunker service."""

import asyncio
from dataclasses import dataclass

from fastapi import FastAPI
from tokenizers import Tokenizer

from contracts.events import ChunksReady
from contracts.topics import CHUNKS_READY, DOCUMENT_UPLOADED
from ragbus.adapters.embedding.model_files import load_tokenizer
from ragbus.bus import Bus, create_broker
from ragbus.lag import lag_hooks
from ragbus.service import create_service_app

from .settings import ChunkerSettings, get_settings
from .subscriber import GROUP, register

__all__ = ["ChunkerAdapters", "create_app", "get_settings"]


@dataclass(frozen=True)
class ChunkerAdapters:
    """The chunker's ports. A `tokenizer` left None is the embedding model's, counting tokens
    for the split (no truncation, no padding). The parsers' sandbox and the blob reader are
    built by the subscriber from the settings."""

    tokenizer: Tokenizer | None = None


def create_app(
    settings: ChunkerSettings | None = None, adapters: ChunkerAdapters | None = None
) -> FastAPI:
    settings = settings or get_settings()
    given = adapters or ChunkerAdapters()
    tokenizer = given.tokenizer
    if tokenizer is None:
        tokenizer = load_tokenizer(max_tokens=0, pad=False)
    broker = create_broker(settings, "chunker")
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
