import threading
from datetime import UTC, datetime, timedelta

import pytest

from contracts.events import DocumentState, StatusUpdate
from contracts.events import DocumentState as S
from contracts.status import DocumentTable, fold

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STAGE = {
    S.RECEIVED: "ingest",
    S.CHUNKING: "chunker",
    S.EMBEDDING: "chunker",
    S.INDEXING: "embedder",
    S.INDEXED: "indexer",
    S.FAILED: "chunker",
    S.DELETED: "ingest",
}


def update(state, second, version="v1", **fields):
    return StatusUpdate(
        document_id="d",
        tenant_id="t",
        stage=STAGE[state],
        state=state,
        version=version,
        occurred_at=T0 + timedelta(seconds=second),
        **fields,
    )


def replay(*updates):
    record = None
    for item in updates:
        record = fold(record, item) or record
    return record


HAPPY = [
    update(S.RECEIVED, 0, filename="a.md"),
    update(S.CHUNKING, 1),
    update(S.EMBEDDING, 2, chunks=3),
    update(S.INDEXING, 5, chunks=3),
    update(S.INDEXED, 6, chunks=3, indexed_chunks=3),
]


@pytest.mark.parametrize(
    ("updates", "state", "version", "reason"),
    [
        (HAPPY, S.INDEXED, "v1", None),
        # A stage's redelivered update never moves the document back.
        ([*HAPPY, update(S.EMBEDDING, 7, chunks=3)], S.INDEXED, "v1", None),
        (
            [*HAPPY[:2], update(S.FAILED, 2, reason="chunker: PDF is encrypted")],
            S.FAILED,
            "v1",
            "chunker: PDF is encrypted",
        ),
        # A failed document makes progress again when a stage handles it again (a dead letter
        # replayed after a fix), and so does a deleted one uploaded again.
        (
            [*HAPPY[:2], update(S.FAILED, 2, reason="x"), update(S.EMBEDDING, 3)],
            S.EMBEDDING,
            "v1",
            None,
        ),
        (
            [*HAPPY, update(S.DELETED, 7, version=None), update(S.CHUNKING, 8)],
            S.CHUNKING,
            "v1",
            None,
        ),
        # A deletion ends the record, whatever the version.
        ([*HAPPY, update(S.DELETED, 7, version=None)], S.DELETED, "v1", None),
        # A new upload starts over; late updates of the old version are ignored.
        (
            [*HAPPY, update(S.RECEIVED, 10, "v2"), update(S.INDEXED, 11, "v1")],
            S.RECEIVED,
            "v2",
            None,
        ),
        # Producers that skip ingest start at CHUNKING; a new version there starts over too.
        ([*HAPPY, update(S.CHUNKING, 10, "v2")], S.CHUNKING, "v2", None),
        # A dead letter may not know the version: it still fails the current one.
        ([*HAPPY[:3], update(S.FAILED, 4, version=None, reason="bad")], S.FAILED, "v1", "bad"),
    ],
)
def test_fold(updates, state, version, reason):
    record = replay(*updates)
    assert (record.state, record.version, record.reason) == (state, version, reason)


def test_counts_filename_and_timings_follow_the_updates():
    record = replay(*HAPPY)
    assert (record.filename, record.chunks, record.indexed_chunks) == ("a.md", 3, 3)
    assert record.timings_ms == {
        "chunking": 1000.0,
        "embedding": 3000.0,
        "indexing": 1000.0,
        "total": 6000.0,
    }


def test_a_repeated_update_changes_nothing():
    record = replay(*HAPPY)
    assert fold(record, HAPPY[-1]) is None


def test_reupload_of_the_same_version_runs_again():
    record = replay(*HAPPY, update(S.RECEIVED, 20))
    assert record.state is S.RECEIVED and record.chunks is None


def test_another_tenants_update_never_touches_a_record():
    record = replay(*HAPPY)
    intruder = update(S.DELETED, 9, version=None).model_copy(update={"tenant_id": "other"})
    assert fold(record, intruder) is None
    assert fold(record, HAPPY[0].model_copy(update={"tenant_id": "other"})) is None


def test_a_deleted_document_is_forgotten_once_its_retention_has_passed():
    table = DocumentTable(deleted_retention=timedelta(hours=1))
    start = datetime(2026, 12, 1, tzinfo=UTC)

    def at(minutes: int, document_id: str, state: DocumentState) -> StatusUpdate:
        return StatusUpdate(
            document_id=document_id,
            tenant_id="acme",
            stage="indexer",
            state=state,
            version="v1",
            occurred_at=start + timedelta(minutes=minutes),
        )

    table.apply(at(0, "gone", DocumentState.DELETED))
    table.apply(at(0, "back", DocumentState.DELETED))
    table.apply(at(10, "back", DocumentState.RECEIVED))  # uploaded again: it exists
    table.apply(at(30, "other", DocumentState.INDEXED))
    assert table.get("acme", "gone") is not None  # within the hour
    table.apply(at(61, "other", DocumentState.INDEXED))
    assert table.get("acme", "gone") is None
    assert table.get("acme", "back").state is DocumentState.RECEIVED


def test_listing_from_another_thread_while_updates_fold_in_is_safe():
    table = DocumentTable()
    errors: list[BaseException] = []
    done = threading.Event()

    def list_repeatedly() -> None:
        try:
            while not done.is_set():
                table.list("acme")
        except BaseException as exc:  # what the listing raised, for the assertion
            errors.append(exc)

    reader = threading.Thread(target=list_repeatedly)
    reader.start()
    try:
        for n in range(30_000):
            table.apply(
                StatusUpdate(
                    document_id=f"d{n}",
                    tenant_id="acme",
                    stage="ingest",
                    state=DocumentState.RECEIVED,
                )
            )
    finally:
        done.set()
        reader.join()
    assert errors == []
