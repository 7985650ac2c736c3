"""The embedder's batch subscriber: `chunks.ready` in, `vectors.ready` out.

A tombstone (`DocumentDeleted`) is passed on in its place among the outputs: the chunks before
it are embedded and published first, so the indexer sees a document's events in their order.
"""

import asyncio
import time
from collections.abc import Sequence

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from contracts.events import ChunksOrDelete, ChunksReady, DocumentDeleted, DocumentState
from contracts.topics import CHUNKS_READY, VECTORS_READY
from ragbus import metrics
from ragbus.bus import ASSIGNMENT, Bus, Record
from ragbus.ports import EmbeddingBackend, EmbeddingUnavailable
from ragbus.retry import retry

from .settings import EmbedderSettings
from .transform import attach_vectors, texts_of

GROUP = "ragbus-embedder"


def register(
    broker: KafkaBroker, bus: Bus, settings: EmbedderSettings, backend: EmbeddingBackend
) -> None:
    """Subscribe the embedder to `chunks.ready`, pulling several events per model batch."""

    async def embed(events: Sequence[ChunksReady]) -> None:
        if not events:
            return
        texts = texts_of(events)
        started = time.perf_counter()
        vectors = await retry(
            lambda: asyncio.to_thread(backend.embed, texts),
            transient=(EmbeddingUnavailable,),
            what="embedding",
        )
        seconds = time.perf_counter() - started
        outputs = attach_vectors(events, vectors, backend.name)
        # Reported before the vectors go out, so it reaches document.status before the
        # indexer's update about them.
        for output in outputs:
            if output.batch == 0:
                await bus.report(
                    output,
                    DocumentState.INDEXING,
                    filename=output.source,
                    chunks=output.total_chunks,
                )
        await bus.publish(VECTORS_READY, outputs)
        metrics.BATCH_SIZE.labels("embedder").observe(len(texts))
        metrics.STAGE_SECONDS.labels("embedder").observe(seconds)
        metrics.CHUNKS.labels("embedder").inc(len(texts))

    async def handle(records: Sequence[Record]) -> None:
        pending: list[ChunksReady] = []
        for record in records:
            event = await bus.decode(record, ChunksOrDelete)
            if isinstance(event, DocumentDeleted):
                await embed(pending)
                pending = []
                await bus.publish(VECTORS_READY, [event])
            elif event is not None:
                metrics.MESSAGES.labels("embedder", CHUNKS_READY, "ok").inc()
                pending.append(event)
        await embed(pending)

    @broker.subscriber(
        CHUNKS_READY,
        group_id=GROUP,
        batch=True,
        max_records=settings.max_events_per_batch,
        auto_offset_reset="earliest",
        # Commit only after the vectors are published; an error leaves the batch for a retry.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        partition_assignment_strategy=ASSIGNMENT,
        max_poll_interval_ms=15 * 60 * 1000,
        title="embedder",
        description="Embed chunks in batches; pass deletions on in order.",
    )
    async def on_chunks_ready(message: KafkaMessage) -> None:
        await bus.process(message.raw_message, handle)
