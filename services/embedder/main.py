"""Composition root of the embedder service."""

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI

from contracts.events import VectorsReady
from contracts.topics import CHUNKS_READY, VECTORS_READY
from ragbus.adapters.embedding import Embedders, create_backend
from ragbus.bus import Bus, create_broker
from ragbus.ports import EmbeddingBackend, EmbeddingUnavailable
from ragbus.service import Hook, create_service_app
from ragbus.settings import EmbedModel

from .settings import EmbedderSettings, get_settings
from .subscriber import GROUP, register

__all__ = ["EmbedderAdapters", "create_app", "get_settings"]


@dataclass(frozen=True)
class EmbedderAdapters:
    """The embedder's ports. An `embedder` left None is built from the settings (TEI or the
    packaged model) and closed at shutdown; one passed in stays the caller's to close."""

    embedder: EmbeddingBackend | None = None


def create_app(settings: EmbedderSettings, adapters: EmbedderAdapters | None = None) -> FastAPI:
    given = adapters or EmbedderAdapters()
    owned: list[Hook] = []
    backend = given.embedder
    if backend is None:
        backend = create_backend(
            settings.tei_url,
            threads=settings.embed_threads,
            batch_size=settings.embed_batch_size,
            model=settings.embed_model,
        )
        owned.append(_closing(backend))
    backends = Embedders(
        backend, settings.embed_model, None if settings.tei_url else load(settings)
    )
    owned.append(_closing(backends))
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
        backends,
    )
    return create_service_app(
        "embedder",
        settings,
        broker=broker,
        lag=(GROUP, CHUNKS_READY),
        shutdown=owned,
        description="Health and metrics only.",
    )


def load(settings: EmbedderSettings) -> Callable[[EmbedModel], EmbeddingBackend]:
    """How another in-process model is loaded: like the configured one."""

    def make(model: EmbedModel) -> EmbeddingBackend:
        return create_backend(
            None, threads=settings.embed_threads, batch_size=settings.embed_batch_size, model=model
        )

    return make


def _closing(backend: EmbeddingBackend | Embedders) -> Hook:
    async def close() -> None:
        backend.close()

    return close
