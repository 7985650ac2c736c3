"""The status board: the document table with change notifications for SSE clients."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import timedelta

from contracts.events import StatusUpdate
from contracts.status import DocumentRecord, DocumentTable

QUEUE_LIMIT = 10_000


class StatusBoard(DocumentTable):
    def __init__(self, deleted_retention: timedelta | None = None) -> None:
        super().__init__(deleted_retention)
        self._listeners: dict[asyncio.Queue[DocumentRecord | None], str] = {}

    def streams(self, tenant_id: str) -> int:
        """How many watchers the tenant has."""
        return sum(1 for tenant in self._listeners.values() if tenant == tenant_id)

    def apply(self, update: StatusUpdate) -> DocumentRecord | None:
        """Fold one update in; tell listeners when the record changed."""
        record = super().apply(update)
        if record is None:
            return None
        for queue in list(self._listeners):
            if queue.qsize() >= QUEUE_LIMIT - 1:
                # A client that stops reading is cut off rather than holding memory forever.
                self._listeners.pop(queue, None)
                queue.put_nowait(None)
            else:
                queue.put_nowait(record)
        return record

    @contextmanager
    def _listening(self, tenant_id: str) -> Iterator[asyncio.Queue[DocumentRecord | None]]:
        queue: asyncio.Queue[DocumentRecord | None] = asyncio.Queue(QUEUE_LIMIT)
        self._listeners[queue] = tenant_id
        try:
            yield queue
        finally:
            self._listeners.pop(queue, None)

    async def watch(
        self, tenant_id: str, document_id: str | None = None
    ) -> AsyncIterator[DocumentRecord | None]:
        """The tenant's current records (or one document's), then None, then every change.

        Listening starts before the current records are read, so no change falls in between.
        """
        with self._listening(tenant_id) as queue:
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
