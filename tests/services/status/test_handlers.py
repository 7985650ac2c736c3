"""The status service's rule: `ragbus.status_feed.follow` folding `document.status` into the
StatusBoard, through FastStream's in-memory TestKafkaBroker (no real broker)."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from contracts.events import DeadLetter, DocumentState, Stage, StatusUpdate
from contracts.status import DocumentRecord
from contracts.topics import DOCUMENT_STATUS, dlq
from ragbus.bus import Bus, encode
from ragbus.status_feed import follow
from services.status.board import StatusBoard

pytestmark = pytest.mark.unit

S = DocumentState


def update(
    state: DocumentState,
    *,
    document_id: str = "d1",
    tenant_id: str = "acme",
    version: str | None = "v1",
    stage: Stage = "chunker",
    **fields: Any,
) -> StatusUpdate:
    return StatusUpdate(
        document_id=document_id,
        tenant_id=tenant_id,
        stage=stage,
        state=state,
        version=version,
        **fields,
    )


@pytest.fixture
def broker() -> KafkaBroker:
    return KafkaBroker("127.0.0.1:9")  # never connected: TestKafkaBroker patches it


@pytest.fixture
def board(broker: KafkaBroker) -> StatusBoard:
    board = StatusBoard()
    follow(broker, board, "status", Bus(broker, "status", consumes=[DOCUMENT_STATUS]))
    return board


@pytest.fixture
def letters(broker: KafkaBroker) -> list[DeadLetter]:
    seen: list[DeadLetter] = []

    @broker.subscriber(dlq(DOCUMENT_STATUS))
    async def sink(body: dict) -> None:
        seen.append(DeadLetter.model_validate(body))

    return seen


@pytest.fixture
async def test_broker(
    broker: KafkaBroker, board: StatusBoard, letters: list[DeadLetter]
) -> AsyncIterator[KafkaBroker]:
    """The broker patched in memory, once every subscriber is registered."""
    async with TestKafkaBroker(broker) as started:
        yield started


async def publish(test_broker: KafkaBroker, *updates: StatusUpdate) -> None:
    for one in updates:
        await test_broker.publish(encode(one), DOCUMENT_STATUS, key=one.document_id.encode())


def state_of(board: StatusBoard, document_id: str = "d1") -> tuple[DocumentState, str | None]:
    record = board.get("acme", document_id)
    assert record is not None
    return record.state, record.version


async def test_updates_are_folded_into_the_board(test_broker, board):
    await publish(
        test_broker,
        update(S.RECEIVED, stage="ingest", filename="a.md"),
        update(S.CHUNKING),
        update(S.EMBEDDING, chunks=3),
        update(S.INDEXING, stage="embedder"),
        update(S.INDEXED, stage="indexer", indexed_chunks=3),
        update(S.RECEIVED, document_id="d2", stage="ingest", filename="b.md"),
    )

    record = board.get("acme", "d1")
    assert record is not None
    assert (record.state, record.version, record.filename) == (S.INDEXED, "v1", "a.md")
    assert (record.chunks, record.indexed_chunks) == (3, 3)
    assert set(record.timings_ms) == {"chunking", "embedding", "indexing", "total"}
    assert [r.document_id for r in board.list("acme")] == ["d2", "d1"]
    assert board.get("other", "d1") is None


@pytest.mark.parametrize(
    ("stale", "why"),
    [
        (update(S.CHUNKING), "a redelivered earlier state"),
        (update(S.EMBEDDING, version="v0"), "another (older) version"),
        (update(S.INDEXED, tenant_id="intruder", stage="indexer"), "another tenant"),
    ],
    ids=["backwards", "other-version", "other-tenant"],
)
async def test_a_stale_update_is_ignored(test_broker, board, stale, why):
    await publish(test_broker, update(S.RECEIVED, stage="ingest"), update(S.EMBEDDING))
    before = board.get("acme", "d1")

    await publish(test_broker, stale)

    assert board.get("acme", "d1") == before, why
    assert state_of(board) == (S.EMBEDDING, "v1")


async def test_a_watcher_sees_current_records_then_each_change_but_not_stale_ones(
    test_broker, board
):
    await publish(test_broker, update(S.RECEIVED, stage="ingest"))
    seen: list[DocumentRecord | None] = []

    async def watch() -> None:
        async for record in board.watch("acme"):
            seen.append(record)
            if record is not None and record.state is S.INDEXED:
                return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0)  # the watcher is listening
    await publish(
        test_broker,
        update(S.CHUNKING),
        update(S.RECEIVED, document_id="x", tenant_id="other", stage="ingest"),
        update(S.CHUNKING),  # redelivered: stale
        update(S.EMBEDDING),
        update(S.INDEXED, stage="indexer"),
    )
    await asyncio.wait_for(watcher, 2)

    assert [r and (r.document_id, r.state) for r in seen] == [
        ("d1", S.RECEIVED),
        None,
        ("d1", S.CHUNKING),
        ("d1", S.EMBEDDING),
        ("d1", S.INDEXED),
    ]


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"not json", "invalid event"),
        (b'{"document_id": "d1"}', "invalid event"),
        (None, "empty message (no value)"),
    ],
    ids=["not-json", "incomplete", "no-value"],
)
async def test_an_undecodable_record_is_dead_lettered_and_the_board_unchanged(
    test_broker, board, letters, payload, error
):
    await publish(test_broker, update(S.RECEIVED, stage="ingest"), update(S.CHUNKING))
    before = dict(board.records)

    await test_broker.publish(payload, DOCUMENT_STATUS, key=b"d1")

    (letter,) = letters
    assert (letter.topic, letter.stage, letter.document_id) == (DOCUMENT_STATUS, "status", "d1")
    assert error in letter.error
    assert letter.payload == (payload or b"").decode()
    assert board.records == before
    # The feed goes on after the bad record.
    await publish(test_broker, update(S.EMBEDDING))
    assert state_of(board) == (S.EMBEDDING, "v1")
