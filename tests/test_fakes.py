"""The fakes of tests/fakes.py hold to their ports' semantics: FakeStore to the cases of
tests/ragbus/adapters/test_store.py that QdrantStore passes on real storage."""

import inspect
import uuid
from typing import Any

import numpy as np
import pytest

from ragbus.ports import (
    ChatModel,
    EmbeddingBackend,
    Hit,
    LlmError,
    Message,
    Point,
    Reranker,
    RerankError,
    SearchRequest,
    VectorStore,
)
from ragbus.sparse import encode_document, encode_query

from .fakes import FakeChatModel, FakeEmbedder, FakeReranker, FakeStore

pytestmark = pytest.mark.unit

PASSAGES = {
    # (tenant, text, dense vector, metadata), as in test_store.py
    "a1": ("acme", "The scheduler assigns pods to nodes.", [1.0, 0.0, 0.0, 0.0], {"team": "x"}),
    "a2": ("acme", "Etcd stores the cluster state.", [0.0, 1.0, 0.0, 0.0], {"team": "y"}),
    "a3": ("acme", "Kubelet runs containers on a node.", [0.0, 0.0, 1.0, 0.0], {"team": "x"}),
    "b1": ("beta", "The scheduler assigns pods to nodes.", [1.0, 0.0, 0.0, 0.0], {"team": "x"}),
    "b2": ("beta", "Secrets hold passwords and tokens.", [0.0, 0.0, 0.0, 1.0], {"team": "x"}),
}


def _id(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


@pytest.fixture
def store() -> FakeStore:
    store = FakeStore()
    store.ensure_collection(4)
    store.upsert(
        [
            Point(
                id=_id(name),
                vector=vector,
                sparse=encode_document(text),
                payload={
                    "tenant_id": tenant,
                    "document_id": name,
                    "version": "v1",
                    "text": text,
                    "metadata": metadata,
                },
            )
            for name, (tenant, text, vector, metadata) in PASSAGES.items()
        ]
    )
    for name in PASSAGES:
        store.promote(name, "v1")
    return store


def _version_points(
    document: str, version: str, uploaded_at: str, texts: list[str], tenant: str = "acme"
) -> list[Point]:
    return [
        Point(
            id=_id(f"{document}/{version}/{ordinal}"),
            vector=[1.0, 0.0, 0.0, 0.0],
            sparse=encode_document(text),
            payload={
                "tenant_id": tenant,
                "document_id": document,
                "version": version,
                "uploaded_at": uploaded_at,
                "text": text,
            },
        )
        for ordinal, text in enumerate(texts)
    ]


def _texts(store: FakeStore, document: str = "doc") -> list[str]:
    hits = store.search(SearchRequest("acme", 50, dense=[1.0, 0.0, 0.0, 0.0]))
    return sorted(hit.payload["text"] for hit in hits if hit.payload["document_id"] == document)


def _names(hits: list[Hit]) -> list[str]:
    return [hit.payload["document_id"] for hit in hits]


def _parameters(function: Any) -> list[tuple[str, Any]]:
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize(
    ("protocol", "fake"),
    [
        (VectorStore, FakeStore()),
        (EmbeddingBackend, FakeEmbedder()),
        (ChatModel, FakeChatModel()),
        (Reranker, FakeReranker()),
    ],
)
def test_each_fake_has_every_member_of_its_port_with_the_same_parameters(protocol, fake):
    members = [name for name in vars(protocol) if not name.startswith("_")]
    members += list(getattr(protocol, "__annotations__", {}))
    assert members
    for name in members:
        assert hasattr(fake, name), name
        declared = getattr(protocol, name, None)
        if inspect.isfunction(declared):
            implemented = getattr(type(fake), name)
            assert _parameters(implemented) == _parameters(declared), name
            # Awaited where the port awaits (`stream` is a plain call returning an iterator).
            awaited = inspect.iscoroutinefunction(declared)
            assert inspect.iscoroutinefunction(implemented) == awaited, name


def test_the_fakes_meet_their_ports_for_the_type_checker() -> None:
    ports: tuple[VectorStore, EmbeddingBackend, ChatModel, Reranker] = (
        FakeStore(),
        FakeEmbedder(),
        FakeChatModel(),
        FakeReranker(),
    )
    assert len(ports) == 4


# FakeStore: the cases of test_store.py.


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
@pytest.mark.parametrize("tenant", ["acme", "beta"])
def test_a_tenant_never_gets_another_tenants_chunks(store, mode, tenant):
    question = "which component assigns pods to nodes and stores state and secrets"
    request = SearchRequest(
        tenant,
        limit=10,
        dense=[0.5, 0.5, 0.5, 0.5] if mode != "sparse" else None,
        sparse=encode_query(question) if mode != "dense" else None,
    )
    hits = store.search(request)
    assert hits
    assert {hit.payload["tenant_id"] for hit in hits} == {tenant}


def test_dense_search_ranks_by_cosine(store):
    hits = store.search(SearchRequest("acme", 2, dense=[0.0, 2.0, 0.1, 0.0]))
    assert _names(hits) == ["a2", "a3"]
    assert hits[0].score == pytest.approx(2.0 / np.hypot(2.0, 0.1))


def test_sparse_search_ranks_by_shared_terms(store):
    query = encode_query("where is cluster state kept")
    hits = store.search(SearchRequest("acme", 3, sparse=query))
    assert _names(hits) == ["a2"]  # no other passage shares a term with the question


def test_hybrid_fuses_both_rankings(store):
    request = SearchRequest(
        "acme", 2, dense=[0.0, 0.0, 1.0, 0.0], sparse=encode_query("etcd cluster state")
    )
    assert set(_names(store.search(request))) == {"a2", "a3"}


def test_metadata_filters_match_exactly(store):
    request = SearchRequest("acme", 10, dense=[0.0, 1.0, 0.0, 0.0], filters={"team": "x"})
    assert set(_names(store.search(request))) == {"a1", "a3"}


def test_nothing_to_search_with_gives_nothing(store):
    assert store.search(SearchRequest("acme", 5, sparse=encode_query("the of and"))) == []


def test_generation_follows_the_collection(store):
    assert store.generation() == 1
    assert FakeStore().generation() == 0


def test_vectors_of_another_size_are_refused(store):
    with pytest.raises(ValueError, match="4-dim"):
        store.ensure_collection(8)
    with pytest.raises(ValueError, match="dimensions"):
        store.upsert([Point("p", [1.0], encode_document("x"), {})])
    with pytest.raises(ValueError, match="ensure_collection"):
        FakeStore().upsert(_version_points("doc", "v1", "2026-01-01T00:00:00", ["text"]))


def test_a_version_is_searched_only_once_promoted(store):
    store.upsert(_version_points("doc", "v1", "2026-01-01T00:00:00", ["old one", "old two"]))
    assert _texts(store) == []
    assert store.count("doc") == store.count("doc", "v1") == 2
    assert store.promote("doc", "v1") == 0
    assert _texts(store) == ["old one", "old two"]


def test_a_new_version_replaces_the_old_one_at_once(store):
    store.upsert(_version_points("doc", "v1", "2026-01-01T00:00:00", ["old one", "old two"]))
    store.promote("doc", "v1")
    store.upsert(_version_points("doc", "v2", "2026-01-02T00:00:00", ["new one"]))
    assert _texts(store) == ["old one", "old two"]
    assert store.count("doc") == 3
    assert store.promote("doc", "v2") == 2
    assert _texts(store) == ["new one"]
    assert store.count("doc") == store.count("doc", "v2") == 1
    assert store.count("doc", "v1") == 0


def test_a_replayed_batch_of_the_live_version_stays_live(store):
    points = _version_points("doc", "v1", "2026-01-01T00:00:00", ["old one", "old two"])
    store.upsert(points)
    store.promote("doc", "v1")
    store.upsert(points[1:])
    assert _texts(store) == ["old one", "old two"]
    assert store.count("doc") == 2  # the same ids overwrite, never duplicate


def test_an_older_version_completing_late_is_dropped_not_served(store):
    store.upsert(_version_points("doc", "v2", "2026-01-02T00:00:00", ["new one"]))
    store.promote("doc", "v2")
    store.upsert(_version_points("doc", "v1", "2026-01-01T00:00:00", ["old one"]))
    assert store.promote("doc", "v1") is None
    assert _texts(store) == ["new one"]
    assert store.count("doc") == 1


def test_promoting_an_unknown_version_changes_nothing(store):
    assert store.promote("nothing", "v1") == 0
    assert store.promote("a1", "v9") == 0
    assert _names(store.search(SearchRequest("acme", 1, dense=[1.0, 0.0, 0.0, 0.0]))) == ["a1"]


def test_a_deleted_document_leaves_no_point_and_spares_other_tenants(store):
    store.upsert(_version_points("doc", "v1", "2026-01-01T00:00:00", ["one", "two"]))
    store.upsert(_version_points("doc", "v2", "2026-01-02T00:00:00", ["three"]))
    assert store.delete_document("doc", "beta") == 0
    assert store.delete_document("doc", "acme") == 3
    assert store.count("doc") == 0
    assert store.delete_document("doc", "acme") == 0


def test_a_document_id_of_another_tenant_is_not_deleted(store):
    store.upsert(_version_points("doc", "v1", "2026-01-01T00:00:00", ["one"], tenant="beta"))
    assert store.delete_document("doc", "acme") == 0
    assert store.count("doc") == 1


def test_index_info_counts_one_tenants_points_and_documents(store):
    everything, acme = store.info(), store.info("acme")
    assert (everything.points, everything.documents) == (5, 5)
    assert (acme.points, acme.documents) == (3, 3)
    assert (acme.alias, acme.collection, acme.generation) == ("ragbus", "ragbus_g1", 1)
    assert store.info("nobody").points == 0
    empty = FakeStore().info()
    assert (empty.collection, empty.generation, empty.points) == ("", 0, 0)


# FakeEmbedder.


def test_vectors_are_unit_float32_rows_in_order_and_deterministic():
    embedder = FakeEmbedder(dimensions=16, name="fake-16")
    texts = ["alpha", "beta", "", "alpha"]
    vectors = embedder.embed(texts)
    assert (embedder.name, embedder.dimensions) == ("fake-16", 16)
    assert vectors.shape == (4, 16) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(vectors[0], vectors[3])
    assert abs(float(vectors[0] @ vectors[1])) < 0.99
    np.testing.assert_array_equal(FakeEmbedder(dimensions=16).embed(["beta"])[0], vectors[1])
    assert embedder.calls == [texts]


def test_embedding_nothing_gives_an_empty_batch():
    assert FakeEmbedder(dimensions=3).embed([]).shape == (0, 3)


def test_a_single_str_is_refused_and_a_set_failure_is_raised():
    embedder = FakeEmbedder()
    with pytest.raises(TypeError):
        embedder.embed("one text")
    embedder.failure = RuntimeError("down")
    with pytest.raises(RuntimeError, match="down"):
        embedder.embed(["x"])
    embedder.close()
    with pytest.raises(RuntimeError, match="closed"):
        embedder.embed(["x"])


# FakeChatModel.


async def _collect(model: FakeChatModel, messages: list[Message]) -> list[str]:
    return [delta async for delta in model.stream(messages, max_tokens=32)]


async def test_a_scripted_answer_streams_word_by_word_and_the_request_is_kept():
    model = FakeChatModel("Pods run on nodes [1].", name="scripted")
    messages: list[Message] = [{"role": "user", "content": "Where do pods run?"}]
    deltas = await _collect(model, messages)
    assert deltas == ["Pods", " run", " on", " nodes", " [1]."]
    assert "".join(deltas) == "Pods run on nodes [1]."
    assert model.name == "scripted"
    assert [(r.messages, r.max_tokens, r.temperature) for r in model.requests] == [
        (messages, 32, 0.0)
    ]


async def test_answers_are_used_in_turn_and_the_last_repeats():
    model = FakeChatModel(["a", "b"], "second")
    assert await _collect(model, []) == ["a", "b"]
    assert await _collect(model, []) == ["second"]
    assert await _collect(model, []) == ["second"]


@pytest.mark.parametrize(("fail_after", "before"), [(0, []), (2, ["one", " two"]), (9, None)])
async def test_a_failing_model_raises_llm_error_after_its_deltas(fail_after, before):
    model = FakeChatModel("one two three", error=LlmError("timed out"), fail_after=fail_after)
    received = []
    with pytest.raises(LlmError, match="timed out"):
        async for delta in model.stream([], max_tokens=8):
            received.append(delta)
    assert received == (before if before is not None else ["one", " two", " three"])
    await model.close()
    assert model.closed


# FakeReranker.


async def test_the_reranker_scores_each_text_in_order():
    reranker = FakeReranker()
    texts = ["etcd stores cluster state", "pods", "the cluster"]
    assert await reranker.scores("Where is the cluster state?", texts) == [2.0, 0.0, 2.0]
    assert reranker.calls == [("Where is the cluster state?", texts)]
    by_length = FakeReranker(score=lambda query, text: float(len(text)))
    assert await by_length.scores("q", ["abc", "a"]) == [3.0, 1.0]


async def test_a_failing_reranker_raises_rerank_error():
    reranker = FakeReranker(error=RerankError("reranker down"))
    with pytest.raises(RerankError, match="down"):
        await reranker.scores("q", ["a"])
    await reranker.close()
    assert reranker.closed
