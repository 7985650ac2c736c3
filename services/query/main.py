"""Composition root of the query service."""

import asyncio

from fastapi import FastAPI

from contracts.events import IndexPromoted
from ragbus.adapters.embedding import create_backend
from ragbus.adapters.llm import OpenAiChat
from ragbus.adapters.rerank import TeiReranker
from ragbus.adapters.store import shared_store
from ragbus.bus import create_broker
from ragbus.ports import ChatModel, EmbeddingBackend, Reranker
from ragbus.service import create_service_app

from . import completions, routes
from .cache import AnswerCache
from .conversations import ConversationLog
from .pipeline import CachedAnswer, QueryDeps
from .settings import QuerySettings, get_settings
from .subscriber import register

__all__ = ["create_app", "get_settings"]


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


def create_app(
    shared: dict[str, object] | None = None,
    settings: QuerySettings | None = None,
    embedder: EmbeddingBackend | None = None,
    llm: ChatModel | None = None,
    reranker: Reranker | None = None,
) -> FastAPI:
    """With embedded storage, run it in the indexer's process so both share `shared["store"]`."""
    settings = settings or get_settings()
    runner, close = shared_store(shared, settings)
    embedder = embedder or create_backend(
        settings.tei_url, threads=settings.embed_threads, batch_size=1, model=settings.embed_model
    )
    llm = llm or create_llm(settings)
    if reranker is None and settings.rerank_url:
        reranker = TeiReranker(settings.rerank_url)
    broker = create_broker(settings, "query")
    deps = QueryDeps(
        settings=settings,
        store=runner,
        embedder=embedder,
        llm=llm,
        reranker=reranker,
        cache=AnswerCache[CachedAnswer](settings.cache_entries, settings.cache_ttl_s),
    )
    conversations = ConversationLog(broker, max_turns=settings.history_turns)

    def follow_generation(event: IndexPromoted) -> None:
        deps.generation = event.generation

    replay = register(broker, deps.cache, conversations, follow_generation)

    async def read_generation() -> None:
        deps.generation = await runner.run(runner.store.generation)

    async def replay_conversations() -> None:
        await replay.wait(settings.replay_timeout_s)

    async def release() -> None:
        await asyncio.to_thread(embedder.close)
        for adapter in (llm, reranker):
            if adapter is not None:
                await adapter.close()

    app = create_service_app(
        "query",
        broker=broker,
        routers=[routes.router, completions.router],
        startup=[read_generation],
        started=[replay_conversations],
        shutdown=[release, *close],
        description="Answer questions over the promoted index, with citations: JSON, SSE and "
        "the OpenAI chat API.",
    )
    app.state.settings = settings
    app.state.broker = broker
    app.state.deps = deps
    app.state.conversations = conversations
    return app
