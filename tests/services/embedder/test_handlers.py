"""The embedder's rules (`services/embedder/handlers.embed_all`) with the FakeEmbedder: what is
embedded, in which model calls, and the order of what the outcome publishes."""

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pytest

from contracts.events import (
    Chunk,
    ChunksReady,
    DocumentDeleted,
    DocumentState,
    StatusUpdate,
    VectorsReady,
)
from contracts.topics import DOCUMENT_STATUS, VECTORS_READY
from contracts.vectors import unpack
from ragbus.adapters.embedding import Embedders
from ragbus.ports import EmbeddingUnavailable, Vectors
from services.embedder.handlers import embed_all
from tests.events import deleted, kinds
from tests.fakes import FakeEmbedder

pytestmark = pytest.mark.unit

DIMS = 8


def chunks_ready(
    document_id: str, ordinals: Sequence[int], *, total: int, batch: int = 0
) -> ChunksReady:
    return ChunksReady(
        document_id=document_id,
        tenant_id="acme",
        version="v1",
        source=f"{document_id}.md",
        title=document_id.upper(),
        metadata={"team": "docs"},
        total_chunks=total,
        batch=batch,
        uploaded_at=datetime(2025, 1, 1, tzinfo=UTC),
        chunks=[
            Chunk(
                chunk_id=f"{document_id}-{n}",
                ordinal=n,
                text=f"{document_id} text {n}",
                token_count=3,
            )
            for n in ordinals
        ],
    )


@pytest.fixture
def backend() -> FakeEmbedder:
    return FakeEmbedder(dimensions=DIMS, name="fake-model")


async def test_each_chunks_ready_becomes_one_vectors_ready_with_its_vectors_in_order(backend):
    events = [chunks_ready("a", [0, 1, 2], total=3), chunks_ready("b", [0, 1], total=2)]

    outcome = await embed_all(events, Embedders(backend))

    outputs = [event for topic, event in outcome.published if topic == VECTORS_READY]
    assert [(o.document_id, o.batch) for o in outputs] == [("a", 0), ("b", 0)]
    reference = FakeEmbedder(dimensions=DIMS)
    for source, output in zip(events, outputs, strict=True):
        assert isinstance(output, VectorsReady)
        assert (output.model, output.dimensions) == ("fake-model", DIMS)
        assert [c.chunk_id for c in output.chunks] == [c.chunk_id for c in source.chunks]
        assert [c.text for c in output.chunks] == [c.text for c in source.chunks]
        got = np.stack([unpack(c.vector, DIMS) for c in output.chunks])
        np.testing.assert_allclose(got, reference.embed([c.text for c in source.chunks]))
        assert (output.version, output.title, output.metadata, output.trace_id) == (
            source.version,
            source.title,
            source.metadata,
            source.trace_id,
        )
    assert backend.calls == [["a text 0", "a text 1", "a text 2", "b text 0", "b text 1"]]
    assert outcome.rejected == []


async def test_indexing_is_reported_before_the_vectors_and_for_batch_zero_only(backend):
    events = [
        chunks_ready("a", [0, 1], total=3, batch=0),
        chunks_ready("a", [2], total=3, batch=1),
        chunks_ready("b", [0], total=1, batch=0),
    ]

    outcome = await embed_all(events, Embedders(backend))

    assert kinds(outcome.published) == [
        (DOCUMENT_STATUS, "a", "INDEXING"),
        (DOCUMENT_STATUS, "b", "INDEXING"),
        (VECTORS_READY, "a", "batch 0"),
        (VECTORS_READY, "a", "batch 1"),
        (VECTORS_READY, "b", "batch 0"),
    ]
    status = outcome.published[0][1]
    assert isinstance(status, StatusUpdate)
    assert (status.stage, status.state, status.version) == (
        "embedder",
        DocumentState.INDEXING,
        "v1",
    )
    assert (status.filename, status.chunks) == ("a.md", 3)


async def test_a_later_batch_alone_reports_nothing(backend):
    outcome = await embed_all([chunks_ready("a", [2], total=3, batch=1)], Embedders(backend))
    assert kinds(outcome.published) == [(VECTORS_READY, "a", "batch 1")]


@pytest.mark.parametrize(
    ("events", "expected", "model_calls"),
    [
        (
            [chunks_ready("a", [0], total=1), deleted("a"), chunks_ready("b", [0], total=1)],
            [
                (DOCUMENT_STATUS, "a", "INDEXING"),
                (VECTORS_READY, "a", "batch 0"),
                (VECTORS_READY, "a", "DocumentDeleted"),
                (DOCUMENT_STATUS, "b", "INDEXING"),
                (VECTORS_READY, "b", "batch 0"),
            ],
            [["a text 0"], ["b text 0"]],
        ),
        (
            [deleted("a"), chunks_ready("a", [0], total=1)],
            [
                (VECTORS_READY, "a", "DocumentDeleted"),
                (DOCUMENT_STATUS, "a", "INDEXING"),
                (VECTORS_READY, "a", "batch 0"),
            ],
            [["a text 0"]],
        ),
        (
            [chunks_ready("a", [0], total=1), deleted("a")],
            [
                (DOCUMENT_STATUS, "a", "INDEXING"),
                (VECTORS_READY, "a", "batch 0"),
                (VECTORS_READY, "a", "DocumentDeleted"),
            ],
            [["a text 0"]],
        ),
        (
            [deleted("a"), deleted("b")],
            [(VECTORS_READY, "a", "DocumentDeleted"), (VECTORS_READY, "b", "DocumentDeleted")],
            [],
        ),
    ],
    ids=["in-the-middle", "first", "last", "only-tombstones"],
)
async def test_a_tombstone_keeps_its_place_among_the_outputs(
    backend, events, expected, model_calls
):
    outcome = await embed_all(events, Embedders(backend))

    assert kinds(outcome.published) == expected
    assert backend.calls == model_calls
    tombstones = [e for e in events if isinstance(e, DocumentDeleted)]
    assert [e for _, e in outcome.published if isinstance(e, DocumentDeleted)] == tombstones


class FlakyEmbedder(FakeEmbedder):
    """Unavailable for its first `failures` calls, then itself."""

    def __init__(self, failures: int) -> None:
        super().__init__(dimensions=DIMS)
        self.failures = failures
        self.attempts = 0

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise EmbeddingUnavailable("backend overloaded (503)")
        return super().embed(texts)


async def test_an_unavailable_backend_is_retried():
    backend = FlakyEmbedder(failures=1)

    outcome = await embed_all([chunks_ready("a", [0, 1], total=2)], Embedders(backend))

    assert backend.attempts == 2
    assert kinds(outcome.published) == [
        (DOCUMENT_STATUS, "a", "INDEXING"),
        (VECTORS_READY, "a", "batch 0"),
    ]


async def test_a_permanent_backend_error_is_not_retried_and_propagates(backend):
    backend.failure = ValueError("request rejected: input too long")

    with pytest.raises(ValueError, match="input too long"):
        await embed_all([chunks_ready("a", [0], total=1)], Embedders(backend))


class ShortEmbedder(FakeEmbedder):
    """Returns one vector fewer than it was given texts."""

    def embed(self, texts: Sequence[str]) -> Vectors:
        return super().embed(texts)[:-1]


async def test_a_backend_returning_the_wrong_number_of_vectors_fails_the_batch():
    with pytest.raises(ValueError, match="2 vectors for 3 chunks"):
        short = Embedders(ShortEmbedder(dimensions=DIMS))
        await embed_all([chunks_ready("a", [0, 1, 2], total=3)], short)
