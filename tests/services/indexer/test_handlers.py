"""The indexer's rules (`services/indexer/handlers.index`) over the in-memory FakeStore: what
is written, which versions are promoted, and what the outcome publishes or refuses."""

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import UnexpectedResponse

from contracts.events import IndexPromoted, StatusUpdate
from contracts.ids import chunk_id
from contracts.topics import DOCUMENT_STATUS, INDEX_PROMOTED
from ragbus.adapters.store import QdrantStore, StoreRunner
from ragbus.ports import SearchRequest
from services.indexer.handlers import index
from tests.events import UPLOADED_AT, deleted, kinds, vectors_ready
from tests.fakes import FakeStore

pytestmark = pytest.mark.unit

DIMS = 4  # the dimensions of tests.events.vectors_ready
T0 = UPLOADED_AT  # when every event here was uploaded, unless it says otherwise


class RecordingStore(FakeStore):
    """A FakeStore that logs its write calls, and raises `ConnectionError` on the first call of
    each operation named in `flaky` (a store that was briefly unreachable)."""

    def __init__(self, flaky: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.flaky = set(flaky)

    def _called(self, name: str) -> None:
        self.calls.append(name)
        if name in self.flaky:
            self.flaky.discard(name)
            raise ConnectionError(f"store unreachable during {name}")

    def upsert(self, points, generation=None):
        self._called("upsert")
        super().upsert(points, generation)

    def count(self, document_id, version=None, generation=None):
        self._called("count")
        return super().count(document_id, version, generation)

    def promote(self, document_id, version, generation=None):
        self._called("promote")
        return super().promote(document_id, version, generation)

    def delete_document(self, document_id, tenant_id, generation=None):
        self._called("delete_document")
        return super().delete_document(document_id, tenant_id, generation)


@pytest.fixture
def store() -> RecordingStore:
    return RecordingStore()


@pytest.fixture
async def runner(store: RecordingStore) -> AsyncIterator[StoreRunner]:
    runner = StoreRunner(store)
    yield runner
    await runner.close()


# What the outcome publishes for a version promoted, and for a document deleted.
PROMOTED = [(INDEX_PROMOTED, "doc", "IndexPromoted"), (DOCUMENT_STATUS, "doc", "INDEXED")]
REMOVED = [(INDEX_PROMOTED, "doc", "DocumentDeleted"), (DOCUMENT_STATUS, "doc", "DELETED")]


def live_ids(store: FakeStore) -> set[str]:
    return {point_id for point_id, (_, live) in store.points.items() if live}


async def test_a_complete_version_is_promoted_then_reported_indexed(runner, store):
    outcome = await index([vectors_ready(range(2), total=2)], runner, DIMS)

    assert kinds(outcome.published) == PROMOTED
    promoted, status = (event for _, event in outcome.published)
    assert isinstance(promoted, IndexPromoted) and isinstance(status, StatusUpdate)
    assert (promoted.document_id, promoted.version, promoted.points) == ("doc", "v1", 2)
    assert (promoted.alias, promoted.collection, promoted.generation) == (
        "ragbus",
        "ragbus_g1",
        1,
    )
    assert promoted.replaced_versions == 0
    assert (status.stage, status.version, status.chunks, status.indexed_chunks) == (
        "indexer",
        "v1",
        2,
        2,
    )
    assert status.filename == "doc.md"
    assert outcome.rejected == []
    assert live_ids(store) == {chunk_id("doc", "v1", n) for n in range(2)}
    hits = store.search(SearchRequest("acme", 10, dense=[1.0, 0.0, 0.0, 0.0]))
    assert hits[0].id == chunk_id("doc", "v1", 0)


async def test_an_incomplete_version_is_written_but_neither_promoted_nor_announced(runner, store):
    outcome = await index([vectors_ready(range(2), total=3)], runner, DIMS)

    assert outcome.published == [] and outcome.rejected == []
    assert store.count("doc", "v1") == 2
    assert live_ids(store) == set()
    assert store.search(SearchRequest("acme", 10, dense=[1.0, 0.0, 0.0, 0.0])) == []


async def test_a_version_in_two_batches_is_promoted_by_the_call_that_completes_it(runner, store):
    first = await index([vectors_ready(range(2), total=3, batch=0)], runner, DIMS)
    second = await index([vectors_ready([2], total=3, batch=1)], runner, DIMS)

    assert first.published == []
    assert kinds(second.published) == PROMOTED
    promoted = second.published[0][1]
    assert isinstance(promoted, IndexPromoted) and promoted.points == 3
    assert live_ids(store) == {chunk_id("doc", "v1", n) for n in range(3)}


async def test_both_batches_of_a_version_in_one_call_are_announced_once(runner, store):
    events = [
        vectors_ready(range(2), total=3, batch=0),
        vectors_ready([2], total=3, batch=1),
    ]
    outcome = await index(events, runner, DIMS)

    assert kinds(outcome.published) == PROMOTED
    assert store.calls.count("upsert") == 1  # one write for the run of batches


async def test_a_newer_version_replaces_the_older_and_says_how_many_points_it_removed(
    runner, store
):
    await index([vectors_ready(range(3), total=3, version="v1")], runner, DIMS)
    newer = vectors_ready(range(2), total=2, version="v2", uploaded_at=T0 + timedelta(hours=1))
    outcome = await index([newer], runner, DIMS)

    assert kinds(outcome.published) == PROMOTED
    promoted = outcome.published[0][1]
    assert isinstance(promoted, IndexPromoted)
    assert (promoted.version, promoted.points, promoted.replaced_versions) == ("v2", 2, 3)
    assert set(store.points) == live_ids(store) == {chunk_id("doc", "v2", n) for n in range(2)}


async def test_an_older_version_arriving_after_a_newer_one_is_dropped_silently(runner, store):
    await index(
        [vectors_ready(range(2), total=2, version="v2", uploaded_at=T0 + timedelta(hours=1))],
        runner,
        DIMS,
    )
    outcome = await index([vectors_ready(range(3), total=3, version="v1")], runner, DIMS)

    assert outcome.published == [] and outcome.rejected == []
    assert set(store.points) == live_ids(store) == {chunk_id("doc", "v2", n) for n in range(2)}


async def test_a_tombstone_after_uploads_in_one_batch_writes_first_then_deletes(runner, store):
    events = [vectors_ready(range(2), total=2), deleted("doc")]
    outcome = await index(events, runner, DIMS)

    assert kinds(outcome.published) == PROMOTED + REMOVED
    assert store.calls.index("upsert") < store.calls.index("delete_document")
    tombstone, status = outcome.published[2][1], outcome.published[3][1]
    assert tombstone is events[1]
    assert isinstance(status, StatusUpdate) and status.reason == "deleted (2 points removed)"
    assert store.points == {} and store.documents == {}


async def test_uploads_after_a_tombstone_in_one_batch_are_written_after_it(runner, store):
    events = [deleted("doc"), vectors_ready(range(2), total=2)]
    outcome = await index(events, runner, DIMS)

    assert kinds(outcome.published) == REMOVED + PROMOTED
    assert len(live_ids(store)) == 2


@pytest.mark.parametrize(
    ("bad", "reason", "error_type"),
    [
        (
            vectors_ready(range(1), total=1, dimensions=3),
            "vectors are 3-dimensional, this index takes 4 (RAGBUS_VECTOR_DIMENSIONS)",
            "WrongDimensions",
        ),
        (
            vectors_ready(range(1), total=1, vector_length=5),
            "packed vector has 5 floats, expected 4",
            "ValueError",
        ),
    ],
    ids=["wrong-dimensions", "vector-of-wrong-length"],
)
async def test_vectors_that_do_not_fit_the_index_are_rejected_and_nothing_is_written(
    runner, store, bad, reason, error_type
):
    outcome = await index([bad], runner, DIMS)

    assert outcome.published == []
    (rejection,) = outcome.rejected
    assert rejection.event is bad
    assert (rejection.reason, rejection.error_type, rejection.version) == (
        reason,
        error_type,
        "v1",
    )
    assert store.points == {} and "upsert" not in store.calls


async def test_wrong_dimensions_never_decide_the_collection(runner, store):
    await index([vectors_ready(range(1), total=1, dimensions=3)], runner, DIMS)
    assert store.dimensions is None


async def test_a_rejected_event_does_not_hold_back_the_rest_of_the_batch(runner, store):
    bad = vectors_ready(range(1), total=1, document_id="other", dimensions=3)
    outcome = await index([bad, vectors_ready(range(2), total=2)], runner, DIMS)

    assert [r.event for r in outcome.rejected] == [bad]
    assert kinds(outcome.published) == PROMOTED
    assert live_ids(store) == {chunk_id("doc", "v1", n) for n in range(2)}


async def test_a_replay_of_the_same_events_adds_no_points(runner, store):
    events = [
        vectors_ready(range(2), total=3, batch=0),
        vectors_ready([2], total=3, batch=1),
        vectors_ready(range(1), total=1, document_id="other"),
    ]
    await index(events, runner, DIMS)
    before = dict(store.points)

    replayed = await index(events, runner, DIMS)

    assert store.points.keys() == before.keys() and len(store.points) == 4
    assert live_ids(store) == set(before)
    assert replayed.rejected == []
    for _, event in replayed.published:
        if isinstance(event, IndexPromoted):
            assert event.replaced_versions == 0


@pytest.mark.parametrize("operation", ["upsert", "count", "promote", "delete_document"])
async def test_a_transient_store_error_is_retried(operation):
    store = RecordingStore(flaky=(operation,))
    runner = StoreRunner(store)
    try:
        outcome = await index([vectors_ready(range(2), total=2), deleted("doc")], runner, DIMS)
    finally:
        await runner.close()

    assert store.calls.count(operation) == 2
    assert kinds(outcome.published) == PROMOTED + REMOVED
    assert store.points == {}


async def test_a_permanent_store_error_propagates_for_a_redelivery():
    class BrokenStore(FakeStore):
        def upsert(self, points, generation=None):
            raise RuntimeError("disk full")

    runner = StoreRunner(BrokenStore())
    try:
        with pytest.raises(RuntimeError, match="disk full"):
            await index([vectors_ready(range(2), total=2)], runner, DIMS)
    finally:
        await runner.close()


async def test_vectors_of_another_model_are_rejected_once_the_index_holds_one(runner, store):
    await index([vectors_ready(range(1), total=1, model="minilm-int8-pc")], runner, DIMS)
    other = vectors_ready(range(1), total=1, document_id="doc2", model="other-model")

    outcome = await index([other], runner, DIMS)

    assert outcome.published == []
    (rejection,) = outcome.rejected
    assert rejection.event is other
    assert "holds vectors of model 'minilm-int8-pc', these are of 'other-model'" in (
        rejection.reason
    )
    assert store.count("doc2") == 0


def _server_answering(monkeypatch, status: int, reason: str, times: int) -> list[int]:
    """A Qdrant server (qdrant-client's local mode underneath) whose next `times` upserts are
    answered with `status`."""
    answered: list[int] = []
    upsert = QdrantClient.upsert

    def answering(client, *args, **kwargs):
        if len(answered) < times:
            answered.append(status)
            body = b'{"status":{"error":"' + reason.encode() + b'"},"time":0.0}'
            raise UnexpectedResponse(status, reason, body, httpx.Headers())
        return upsert(client, *args, **kwargs)

    monkeypatch.setattr(QdrantClient, "upsert", answering)
    return answered


@pytest.mark.parametrize("status", [503, 502, 429])
async def test_a_servers_5xx_or_429_is_waited_for_not_taken_for_poison(
    tmp_path, monkeypatch, status
):
    answered = _server_answering(monkeypatch, status, "Service Unavailable", times=2)
    runner = StoreRunner(QdrantStore.connect(None, tmp_path, "ragbus"))
    try:
        outcome = await index([vectors_ready(range(2), total=2)], runner, DIMS)
        assert answered == [status, status]
        assert kinds(outcome.published) == PROMOTED and outcome.rejected == []
        assert runner.store.info().points == 2
    finally:
        await runner.close()


async def test_a_servers_other_4xx_is_permanent_with_the_servers_reason(tmp_path, monkeypatch):
    _server_answering(monkeypatch, 400, "Wrong input: vector dimension error", times=99)
    runner = StoreRunner(QdrantStore.connect(None, tmp_path, "ragbus"))
    try:
        outcome = await index([vectors_ready(range(2), total=2)], runner, DIMS)
        # Dead-lettered at once with the server's reason, the document FAILED.
        (rejection,) = outcome.rejected
        assert rejection.error_type == "StoreRefused"
        assert re.search(r"refused the request \(400 .*dimension error", rejection.reason)
    finally:
        await runner.close()
