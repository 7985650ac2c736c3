"""The indexer's batch subscriber: `vectors.ready` in, points upserted, `index.promoted` out."""

import time
from datetime import UTC, datetime

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from qdrant_client.http.exceptions import ResponseHandlingException

from contracts.events import DocumentState, VectorsReady
from contracts.topics import INDEX_PROMOTED, VECTORS_READY
from ragbus import metrics
from ragbus.bus import Bus
from ragbus.retry import retry
from ragbus.store import Point, StoreRunner

from .settings import IndexerSettings
from .transform import promoted, to_points

GROUP = "ragbus-indexer"
TRANSIENT = (ResponseHandlingException, ConnectionError, TimeoutError)


def register(broker: KafkaBroker, bus: Bus, settings: IndexerSettings, runner: StoreRunner) -> None:
    """Subscribe the indexer to `vectors.ready`."""
    store = runner.store

    @broker.subscriber(
        VECTORS_READY,
        group_id=GROUP,
        batch=True,
        max_records=settings.max_events_per_batch,
        auto_offset_reset="earliest",
        # Commit only after the points are written; an error leaves the batch for a retry.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        title="indexer",
        description="Upsert vectors and promote complete documents.",
    )
    async def on_vectors_ready(message: KafkaMessage) -> None:
        started = time.perf_counter()
        events: list[VectorsReady] = []
        points: list[Point] = []
        for record in message.raw_message:
            event = await bus.decode(record, VectorsReady)
            if event is None:
                continue
            try:
                points += to_points(event)
            except ValueError as exc:
                await bus.dead_letter(record, str(exc), type(exc).__name__, version=event.version)
                continue
            events.append(event)
            metrics.MESSAGES.labels("indexer", VECTORS_READY, "ok").inc()
        if not events:
            return
        collection = await runner.run(lambda: store.ensure_collection(events[0].dimensions))
        await retry(
            lambda: runner.run(lambda: store.upsert(points)), transient=TRANSIENT, what="upsert"
        )
        metrics.BATCH_SIZE.labels("indexer").observe(len(points))
        metrics.CHUNKS.labels("indexer").inc(len(points))
        # The last batch seen of each document version decides whether it is complete.
        latest = {(event.document_id, event.version): event for event in events}
        for event in latest.values():
            await _promote_if_complete(bus, runner, event, collection)
        metrics.STAGE_SECONDS.labels("indexer").observe(time.perf_counter() - started)


async def _promote_if_complete(
    bus: Bus, runner: StoreRunner, event: VectorsReady, collection: str
) -> None:
    """Announce a document version once all its chunks are visible, then drop older versions."""
    store = runner.store
    visible = await runner.run(lambda: store.count(event.document_id, event.version))
    if visible < event.total_chunks:
        return
    replaced = await runner.run(
        lambda: store.delete_other_versions(event.document_id, event.version)
    )
    announcement = promoted(
        event, alias=store.alias, collection=collection, points=visible, replaced=replaced
    )
    await bus.publish(INDEX_PROMOTED, [announcement])
    await bus.report(
        event,
        DocumentState.INDEXED,
        filename=event.source,
        chunks=event.total_chunks,
        indexed_chunks=visible,
    )
    latency = (datetime.now(UTC) - event.uploaded_at).total_seconds()
    metrics.UPLOAD_TO_INDEXED.observe(latency)
