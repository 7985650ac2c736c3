"""Composition root of the query service."""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI

from contracts.events import IndexPromoted, IndexSwapped
from ragbus.adapters.embedding import Embedders, create_backend
from ragbus.adapters.llm import OpenAiChat
from ragbus.adapters.rerank import TeiReranker
from ragbus.adapters.store import StoreRunner
from ragbus.adapters.stores import open_store
from ragbus.bus import create_broker
from ragbus.ports import ChatModel, EmbeddingBackend, Reranker
from ragbus.service import Hook, create_service_app
from ragbus.settings import EmbedModel

from . import completions, routes
from .cache import AnswerCache
from .conversations import ConversationLog
from .pipeline import CachedAnswer, QueryDeps
from .settings import QuerySettings, get_settings
from .subscriber import register

__all__ = ["QueryAdapters", "create_app", "get_settings"]


@dataclass(frozen=True)
class QueryAdapters:
    """The query service's ports. One left None is built from the settings and closed at
    shutdown (`llm` and `reranker` only when a URL names them); one passed in stays the
    caller's to close. With embedded storage, one process's indexer and query service must
    share one `store`."""

    store: StoreRunner | None = None
    embedder: EmbeddingBackend | None = None
    llm: ChatModel | None = None
    reranker: Reranker | None = None
    clock: Callable[[], float] | None = None
    """What the answer cache's time-to-live counts on (default `time.monotonic`)."""


def create_llm(settings: QuerySettings) -> ChatModel | None:
    if not settings.llm_url:
        return None
    return OpenAiChat(
        settings.llm_url,
        settings.llm_model,
        api_key=settings.llm_api_key,
        connect_timeout_s=settings.llm_connect_timeout_s,
        delta_timeout_s=settings.llm_delta_timeout_s,
        total_timeout_s=settings.llm_total_timeout_s,
        retries=settings.llm_retries,
    )


def create_app(settings: QuerySettings, adapters: QueryAdapters | None = None) -> FastAPI:
    given = adapters or QueryAdapters()
    owned: list[Hook] = []
    runner = given.store
    if runner is None:
        runner = open_store(settings)
        owned.append(runner.close)
    embedder = given.embedder
    if embedder is None:
        embedder = create_backend(
            settings.tei_url,
            threads=settings.embed_threads,
            batch_size=1,
            model=settings.embed_model,
        )
        owned.append(_closing(embedder))
    llm = given.llm
    if llm is None:
        llm = create_llm(settings)
        if llm is not None:
            owned.append(llm.close)
    reranker = given.reranker
    if reranker is None and settings.rerank_url:
        reranker = TeiReranker(settings.rerank_url)
        owned.append(reranker.close)
    broker = create_broker(settings, "query")
    # Behind TEI only the model it serves is available.
    make = None if settings.tei_url else _loader(settings)
    embedders = Embedders(embedder, settings.embed_model, make)
    owned.append(_closing(embedders))
    deps = QueryDeps(
        settings=settings,
        store=runner,
        embedder=embedder,
        embedders=embedders,
        llm=llm,
        reranker=reranker,
        cache=AnswerCache[CachedAnswer](
            settings.cache_entries, settings.cache_ttl_s, given.clock or time.monotonic
        ),
    )
    conversations = ConversationLog(broker, max_turns=settings.history_turns)

    def follow_generation(event: IndexPromoted | IndexSwapped) -> None:
        if isinstance(event, IndexSwapped):
            deps.generation, deps.model, deps.stale = event.generation, event.model, False
        elif event.generation != deps.generation:
            deps.stale = True  # read the generation and its model from the store again

    replay = register(broker, deps.cache, conversations, follow_generation)

    async def read_generation() -> None:
        await deps.follow_store()

    async def replay_conversations() -> None:
        await replay.wait(settings.replay_timeout_s)

    return create_service_app(
        "query",
        settings,
        broker=broker,
        routers=[routes.router, completions.router],
        startup=[read_generation],
        started=[replay_conversations],
        shutdown=owned[::-1],  # hooks run last first: close in the order built
        description="Answer questions over the promoted index, with citations: JSON, SSE and "
        "the OpenAI chat API.",
        state={"deps": deps, "conversations": conversations},
    )


def _loader(settings: QuerySettings) -> Callable[[EmbedModel], EmbeddingBackend]:
    def make(model: EmbedModel) -> EmbeddingBackend:
        return create_backend(None, threads=settings.embed_threads, batch_size=1, model=model)

    return make


def _closing(embedder: EmbeddingBackend | Embedders) -> Hook:
    async def close() -> None:
        await asyncio.to_thread(embedder.close)

    return close
