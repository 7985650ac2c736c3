"""The fakes of tests/fakes.py hold to their ports' semantics. FakeStore runs the `VectorStore`
cases of tests/ragbus/adapters/test_store.py beside QdrantStore on real storage."""

import inspect
from typing import Any

import numpy as np
import pytest

from ragbus.ports import (
    ChatModel,
    EmbeddingBackend,
    LlmError,
    Message,
    Point,
    Reranker,
    RerankError,
    VectorStore,
)
from ragbus.sparse import encode_document

from .fakes import FakeChatModel, FakeEmbedder, FakeReranker, FakeStore

pytestmark = pytest.mark.unit


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


# FakeStore: the `VectorStore` cases, which it shares with QdrantStore, are in
# tests/ragbus/adapters/test_store.py; here, what is its own.


def test_the_fake_store_refuses_points_before_a_collection_and_of_another_size():
    store = FakeStore()
    with pytest.raises(ValueError, match="ensure_collection"):
        store.upsert([Point("p", [1.0, 0.0, 0.0, 0.0], encode_document("x"), {})])
    store.ensure_collection(4)
    with pytest.raises(ValueError, match="dimensions"):
        store.upsert([Point("p", [1.0], encode_document("x"), {})])


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
