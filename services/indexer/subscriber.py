"""The indexer's batch subscriber: `vectors.ready` in, points upserted, `index.promoted` out.

Records are applied in their order: the upserts before a tombstone are written (and their
complete versions promoted) before the tombstone removes the document, so a replay of the same
records always ends in the same index.
"""

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from qdrant_client.http.exceptions import ResponseHandlingException

from contracts.events import DocumentDeleted, DocumentState, VectorsOrDelete, VectorsReady
from contracts.topics import INDEX_PROMOTED, VECTORS_READY
from ragbus import metrics
from ragbus.adapters.store import StoreRunner
from ragbus.bus import ASSIGNMENT, Bus, Record
from ragbus.ports import Point
from ragbus.retry import retry

from .settings import IndexerSettings
from .transform import promoted, to_points

GROUP = "ragbus-indexer"
TRANSIENT = (ResponseHandlingException, ConnectionError, TimeoutError)
T = TypeVar("T")
log = logging.getLogger(__name__)


def register(broker: KafkaBroker, bus: Bus, settings: IndexerSettings, runner: StoreRunner) -> None:
    """Subscribe the indexer to `vectors.ready`."""
    store = runner.store

    async def call(operation: Callable[[], T], what: str) -> T:
        """A store call on the store's thread, retried while the store is unreachable."""
        return await retry(lambda: runner.run(operation), transient=TRANSIENT, what=what)

    async def write(batch: Sequence[tuple[VectorsReady, list[Point]]]) -> None:
        """Upsert a run of batches, then promote each document version they completed."""
        if not batch:
            return
        points = [point for _, event_points in batch for point in event_points]
        await call(lambda: store.upsert(points), "upsert")
        metrics.BATCH_SIZE.labels("indexer").observe(len(points))
        metrics.CHUNKS.labels("indexer").inc(len(points))
        # The last batch seen of each document version decides whether it is complete.
        latest = {(event.document_id, event.version): event for event, _ in batch}
        for event in latest.values():
            await promote_if_complete(event)

    async def promote_if_complete(event: VectorsReady) -> None:
        """Once all of a version's chunks are stored, make it the live one (dropping the older
        versions in the same step) and announce it."""
        stored = await call(lambda: store.count(event.document_id, event.version), "count")
        if stored < event.total_chunks:
            return
        replaced = await call(lambda: store.promote(event.document_id, event.version), "promote")
        if replaced is None:
            log.info(
                "version %s of %s is superseded by a newer live version; removed",
                event.version,
                event.document_id,
                extra={"document_id": event.document_id, "trace_id": event.trace_id},
            )
            return
        collection = await call(lambda: store.ensure_collection(event.dimensions), "collection")
        announcement = promoted(
            event, alias=store.alias, collection=collection, points=stored, replaced=replaced
        )
        await bus.publish(INDEX_PROMOTED, [announcement])
        await bus.report(
            event,
            DocumentState.INDEXED,
            filename=event.source,
            chunks=event.total_chunks,
            indexed_chunks=stored,
        )
        metrics.UPLOAD_TO_INDEXED.observe((datetime.now(UTC) - event.uploaded_at).total_seconds())

    async def delete(event: DocumentDeleted) -> None:
        removed = await call(
            lambda: store.delete_document(event.document_id, event.tenant_id), "delete"
        )
        await bus.publish(INDEX_PROMOTED, [event])
        await bus.report(event, DocumentState.DELETED, reason=f"deleted ({removed} points removed)")

    async def handle(records: Sequence[Record]) -> None:
        started = time.perf_counter()
        pending: list[tuple[VectorsReady, list[Point]]] = []
        for record in records:
            event = await bus.decode(record, VectorsOrDelete)
            if event is None:
                continue
            if isinstance(event, DocumentDeleted):
                await write(pending)
                pending = []
                await delete(event)
                continue
            if event.dimensions != settings.vector_dimensions:
                # Checked before anything is created: one foreign event must not decide the
                # dimensions of a new collection.
                reason = (
                    f"vectors are {event.dimensions}-dimensional, this index takes "
                    f"{settings.vector_dimensions} (RAGBUS_VECTOR_DIMENSIONS)"
                )
                await bus.dead_letter(record, reason, "WrongDimensions", version=event.version)
                continue
            try:
                await call(partial(store.ensure_collection, event.dimensions), "collection")
                pending.append((event, to_points(event)))
            except ValueError as exc:
                await bus.dead_letter(record, str(exc), type(exc).__name__, version=event.version)
                continue
            metrics.MESSAGES.labels("indexer", VECTORS_READY, "ok").inc()
        await write(pending)
        metrics.STAGE_SECONDS.labels("indexer").observe(time.perf_counter() - started)

    @broker.subscriber(
        VECTORS_READY,
        group_id=GROUP,
        batch=True,
        max_records=settings.max_events_per_batch,
        auto_offset_reset="earliest",
        # Commit only after the points are written; an error leaves the batch for a retry.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        partition_assignment_strategy=ASSIGNMENT,
        title="indexer",
        description="Upsert vectors, promote complete documents, remove deleted ones.",
    )
    async def on_vectors_ready(message: KafkaMessage) -> None:
        await bus.process(message.raw_message, handle)
