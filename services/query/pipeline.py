"""One question through rewrite, cache, retrieval, rerank and generation, as a stream of events.

Every route consumes this stream: `/v1/query/stream` frames it as SSE, `/v1/query` and the
OpenAI-compatible route collect it. A failure ends the stream with a `Failure` event naming the
step; it never raises into the route and never hangs (each outside call has a deadline).
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from ragbus import metrics
from ragbus.adapters.embedding import Embedders
from ragbus.adapters.llm import complete
from ragbus.adapters.store import StoreRunner
from ragbus.ports import (
    ChatModel,
    EmbeddingBackend,
    Hit,
    LlmError,
    Reranker,
    RerankError,
    SearchRequest,
    UnknownGeneration,
)
from ragbus.redact import public
from ragbus.sparse import encode_query

from .cache import AnswerCache
from .models import Citation, Done, Failure, QueryRequest, RerankInfo, Retrieval, Token
from .settings import QuerySettings
from .transform import (
    NO_PASSAGES,
    Exchange,
    answer_messages,
    attributed,
    citations_of,
    cited_numbers,
    extractive_answer,
    rewrite_messages,
    standalone_from,
)

log = logging.getLogger(__name__)

QueryEvent = Retrieval | Token | Citation | Done | Failure
EVENT_NAMES: dict[type[BaseModel], str] = {
    Retrieval: "retrieval",
    Token: "token",
    Citation: "citation",
    Done: "done",
    Failure: "error",
}


@dataclass
class CachedAnswer:
    retrieval: Retrieval
    done: Done


@dataclass
class QueryDeps:
    """Everything a question needs; `main` builds it, tests pass their own."""

    settings: QuerySettings
    store: StoreRunner
    embedder: EmbeddingBackend
    llm: ChatModel | None
    reranker: Reranker | None
    cache: AnswerCache[CachedAnswer]
    embedders: Embedders | None = None
    """Backends by model (None: `embedder` alone)."""
    generation: int = 0
    """The serving generation (a cache-key part), followed through `index.promoted`."""
    model: str | None = None
    """The embedding model of the serving generation: questions are embedded with it."""
    stale: bool = True
    """Whether `generation` and `model` must be read from the store again."""

    async def backend(self, model: str | None) -> EmbeddingBackend:
        """The backend of `model`; one not loaded yet loads off the event loop."""
        if self.embedders is None:
            return self.embedder
        if self.embedders.ready(model):
            return self.embedders.get(model)
        return await asyncio.to_thread(self.embedders.get, model)

    async def follow_store(self) -> None:
        """Read the serving generation and its model from the store."""
        generations = await self.store.run(self.store.store.generations)
        serving = next((g for g in generations if g.state == "serving"), None)
        self.generation = serving.number if serving else 0
        self.model = serving.model if serving else None
        self.stale = False


class _Clock:
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.timings: dict[str, float] = {}

    def lap(self, step: str, since: float) -> float:
        now = time.perf_counter()
        self.timings[step] = round((now - since) * 1000, 2)
        metrics.QUERY_SECONDS.labels(step).observe(now - since)
        return now

    def total(self) -> dict[str, float]:
        self.lap("total", self.started)
        return dict(self.timings)


async def answer(
    deps: QueryDeps, tenant_id: str, request: QueryRequest, history: Sequence[Exchange] = ()
) -> AsyncIterator[QueryEvent]:
    """The events of one question: `Retrieval`, then `Token`s and `Citation`s, then `Done`
    (or a `Failure` at any point)."""
    clock = _Clock()
    outcome = "error"
    try:
        if deps.stale:
            await deps.follow_store()
        question = request.question
        if history:
            question = await _standalone(deps, history, request.question, clock)
        key = deps.cache.key(
            tenant_id,
            question,
            request.filters,
            deps.generation,
            mode=request.mode,
            top_k=request.top_k,
            rerank=request.rerank,
            generate=request.generate,
            model=deps.llm.name if deps.llm else None,
        )
        cached = deps.cache.get(key)
        if cached is not None:
            outcome = "cached"
            async for event in _replay(cached, clock):
                yield event
            return
        retrieval: Retrieval | None = None
        async for event in _fresh(deps, tenant_id, request, question, clock):
            if isinstance(event, Retrieval):
                retrieval = event
            elif isinstance(event, Done) and retrieval is not None:
                # Before yielding: a consumer may stop reading at `Done`.
                deps.cache.put(key, CachedAnswer(retrieval, event))
                outcome = "ok"
            yield event
    finally:
        metrics.QUERIES.labels(request.mode, outcome).inc()


async def _standalone(
    deps: QueryDeps, history: Sequence[Exchange], question: str, clock: _Clock
) -> str:
    """The follow-up rewritten into a standalone question (a plain fallback without a model)."""
    rewritten = ""
    if deps.llm is not None:
        since = time.perf_counter()
        try:
            rewritten = await complete(
                deps.llm,
                rewrite_messages(history, question),
                max_tokens=deps.settings.rewrite_max_tokens,
            )
        except LlmError as exc:
            log.warning("query rewrite failed, using the plain fallback: %s", exc)
        clock.lap("rewrite", since)
    return standalone_from(rewritten, history, question)


async def _replay(cached: CachedAnswer, clock: _Clock) -> AsyncIterator[QueryEvent]:
    yield cached.retrieval
    if cached.done.answer:
        yield Token(text=cached.done.answer)
    for citation in cached.done.citations:
        yield citation
    yield cached.done.model_copy(update={"cached": True, "timings_ms": clock.total()})


async def _fresh(
    deps: QueryDeps, tenant_id: str, request: QueryRequest, question: str, clock: _Clock
) -> AsyncIterator[QueryEvent]:
    settings = deps.settings
    if request.top_k > settings.max_top_k:
        yield Failure(stage="request", message=f"top_k must be at most {settings.max_top_k}")
        return
    use_rerank = deps.reranker is not None and request.rerank is not False
    if request.rerank and deps.reranker is None:
        rerank_info = RerankInfo(applied=False, reason="skipped: no reranker (RERANK_URL unset)")
    elif not use_rerank:
        rerank_info = RerankInfo(applied=False, reason="not requested")
    else:
        rerank_info = RerankInfo(applied=True)
    limit = max(request.top_k, settings.rerank_candidates) if use_rerank else request.top_k
    try:
        hits = await _search(deps, tenant_id, request, question, limit, clock)
    except Exception as exc:  # the store or the embedder failed: say so, don't drop the stream
        log.exception("retrieval failed")
        yield Failure(stage="retrieve", message=f"retrieval failed: {public(str(exc))}")
        return
    if use_rerank and deps.reranker is not None and hits:
        since = time.perf_counter()
        try:
            scores = await deps.reranker.scores(question, [h.payload.get("text", "") for h in hits])
            ranked = sorted(zip(scores, hits, strict=True), key=lambda pair: -pair[0])
            hits = [Hit(hit.id, score, hit.payload) for score, hit in ranked]
        except RerankError as exc:
            rerank_info = RerankInfo(applied=False, reason=f"failed, fused order kept: {exc}")
        clock.lap("rerank", since)
    passages = citations_of(hits[: request.top_k])
    yield Retrieval(
        generation=deps.generation,
        mode=request.mode,
        question=question,
        rerank=rerank_info,
        passages=passages,
        timings_ms=dict(clock.timings),
    )
    if not request.generate:
        yield Done(answer=None, citations=[], model=None, cached=False, timings_ms=clock.total())
        return
    if not passages or deps.llm is None:
        text = NO_PASSAGES if not passages else extractive_answer(passages)
        yield Token(text=text)
        cited = passages[:1]
        for citation in cited:
            yield citation
        yield Done(answer=text, citations=cited, model=None, cached=False, timings_ms=clock.total())
        return
    async for event in _generate(deps.llm, settings, question, passages, clock):
        yield event


async def _search(
    deps: QueryDeps,
    tenant_id: str,
    request: QueryRequest,
    question: str,
    limit: int,
    clock: _Clock,
) -> list[Hit]:
    """The hits of the serving generation, the question embedded with its model; a generation
    dropped meanwhile (a later swap) is followed to the one serving now, once."""
    for attempt in (1, 2):
        if deps.stale:
            await deps.follow_store()
        try:
            return await _search_generation(deps, tenant_id, request, question, limit, clock)
        except UnknownGeneration:
            deps.stale = True
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def _search_generation(
    deps: QueryDeps,
    tenant_id: str,
    request: QueryRequest,
    question: str,
    limit: int,
    clock: _Clock,
) -> list[Hit]:
    since = time.perf_counter()
    generation = deps.generation or None
    dense = None
    if request.mode in ("dense", "hybrid"):
        backend = await deps.backend(deps.model)
        dense = (await asyncio.to_thread(backend.embed, [question]))[0].tolist()
        since = clock.lap("embed", since)
    sparse = encode_query(question) if request.mode in ("sparse", "hybrid") else None
    search = SearchRequest(tenant_id, limit, dense, sparse, dict(request.filters))
    store = deps.store
    hits = await store.run(lambda: store.store.search(search, generation))
    clock.lap("retrieve", since)
    return hits


async def _generate(
    llm: ChatModel,
    settings: QuerySettings,
    question: str,
    passages: list[Citation],
    clock: _Clock,
) -> AsyncIterator[QueryEvent]:
    """Stream the model's answer, announcing each passage the first time it is cited."""
    context = passages[: settings.context_passages]
    since = time.perf_counter()
    parts: list[str] = []
    announced: set[int] = set()
    try:
        async for delta in llm.stream(
            answer_messages(question, context), max_tokens=settings.llm_max_tokens
        ):
            if not parts:
                clock.lap("first_token", since)
            parts.append(delta)
            metrics.LLM_TOKENS.inc()
            yield Token(text=delta)
            for n in cited_numbers("".join(parts), len(context)):
                if n not in announced:
                    announced.add(n)
                    yield passages[n - 1]
    except LlmError as exc:
        log.warning("generation failed: %s", exc)
        yield Failure(stage="generate", message=public(str(exc)))
        return
    clock.lap("generate", since)
    text = "".join(parts).strip()
    cited = [passages[n - 1] for n in cited_numbers(text, len(context))]
    if not cited and (source := attributed(text, context)) is not None:
        cited = [source]
        yield source
    yield Done(answer=text, citations=cited, model=llm.name, cached=False, timings_ms=clock.total())
