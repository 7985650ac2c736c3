"""The in-memory view of every document's state, folded from `document.status`, with change
notifications for SSE clients. The status service serves it; the ingest service consults it.

`follow` replays the compacted topic from the start at every start, in no consumer group and
committing nothing: the topic is the state, and folding it again rebuilds the board.
"""

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import ValidationError

from contracts.events import DocumentState, Stage, StatusUpdate
from contracts.topics import DOCUMENT_STATUS
from ragbus import metrics
from ragbus.bus import Bus, Record
from ragbus.lifecycle import DocumentRecord, fold

QUEUE_LIMIT = 10_000


class StatusBoard:
    def __init__(self) -> None:
        self.records: dict[str, DocumentRecord] = {}
        self._listeners: set[asyncio.Queue[DocumentRecord | None]] = set()

    def apply(self, update: StatusUpdate) -> DocumentRecord | None:
        """Fold one update in; tell listeners when the record changed."""
        record = fold(self.records.get(update.document_id), update)
        if record is None:
            return None
        self.records[update.document_id] = record
        for queue in list(self._listeners):
            if queue.qsize() >= QUEUE_LIMIT - 1:
                # A client that stops reading is cut off rather than holding memory forever.
                self._listeners.discard(queue)
                queue.put_nowait(None)
            else:
                queue.put_nowait(record)
        return record

    def get(self, tenant_id: str, document_id: str) -> DocumentRecord | None:
        record = self.records.get(document_id)
        return record if record is not None and record.tenant_id == tenant_id else None

    def list(
        self, tenant_id: str, state: DocumentState | None = None, limit: int | None = None
    ) -> list[DocumentRecord]:
        matching = (
            record
            for record in self.records.values()
            if record.tenant_id == tenant_id and (state is None or record.state is state)
        )
        return sorted(matching, key=lambda record: record.updated_at, reverse=True)[:limit]

    @contextmanager
    def _listening(self) -> Iterator[asyncio.Queue[DocumentRecord | None]]:
        queue: asyncio.Queue[DocumentRecord | None] = asyncio.Queue(QUEUE_LIMIT)
        self._listeners.add(queue)
        try:
            yield queue
        finally:
            self._listeners.discard(queue)

    async def watch(
        self, tenant_id: str, document_id: str | None = None
    ) -> AsyncIterator[DocumentRecord | None]:
        """The tenant's current records (or one document's), then None, then every change.

        Listening starts before the current records are read, so no change falls in between.
        """
        with self._listening() as queue:
            if document_id is None:
                current = self.list(tenant_id)
            else:
                current = [r for r in [self.get(tenant_id, document_id)] if r is not None]
            for record in current:
                yield record
            yield None
            while (change := await queue.get()) is not None:
                if change.tenant_id == tenant_id and document_id in (None, change.document_id):
                    yield change


def follow(broker: KafkaBroker, board: StatusBoard, stage: Stage, bus: Bus | None = None) -> None:
    """Fold every record of `document.status` into `board`. A bad record is dead-lettered
    through `bus` (by the status service, which owns the topic's DLQ), else skipped."""

    @broker.subscriber(
        DOCUMENT_STATUS,
        group_id=None,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.MANUAL,  # no group, nothing to commit
        title=f"{stage}:status",
        description="Fold every stage's status updates into per-document state.",
    )
    async def on_status_update(message: KafkaMessage) -> None:
        record: Record = message.raw_message
        if bus is not None:
            update = await bus.decode(record, StatusUpdate)
        else:
            try:
                update = StatusUpdate.model_validate_json(record.value or b"")
            except ValidationError:
                update = None
        if update is None:
            metrics.MESSAGES.labels(stage, DOCUMENT_STATUS, "invalid").inc()
            return
        metrics.MESSAGES.labels(stage, DOCUMENT_STATUS, "ok").inc()
        board.apply(update)
