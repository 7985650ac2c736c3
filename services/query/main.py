"""Composition root of the query service."""

import asyncio

from fastapi import FastAPI

from ragbus.embedding import create_backend
from ragbus.embedding.backend import EmbeddingBackend
from ragbus.service import create_service_app
from ragbus.store import shared_store

from .routes import router
from .settings import QuerySettings, get_settings

__all__ = ["create_app", "get_settings"]


def create_app(
    shared: dict[str, object] | None = None,
    settings: QuerySettings | None = None,
    embedder: EmbeddingBackend | None = None,
) -> FastAPI:
    """With embedded storage, run it in the indexer's process so both share `shared["store"]`."""
    settings = settings or get_settings()
    runner, close = shared_store(shared, settings)
    embedder = embedder or create_backend(
        settings.tei_url, threads=settings.embed_threads, batch_size=1
    )

    async def release() -> None:
        await asyncio.to_thread(embedder.close)

    app = create_service_app(
        "query",
        routers=[router],
        shutdown=[release, *close],
        description="Answer questions over the promoted index, with citations.",
    )
    app.state.settings = settings
    app.state.store = runner
    app.state.embedder = embedder
    return app
