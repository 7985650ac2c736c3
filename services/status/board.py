"""The in-memory view of every document's state, with change notifications for SSE clients."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

from contracts.events import DocumentState, StatusUpdate

from .fold import DocumentRecord, fold

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
