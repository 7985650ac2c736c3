"""The chunker's subscriber: `document.uploaded` in, `chunks.ready` out (tombstones passed on)."""

import asyncio
import time
from collections.abc import Sequence

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from tokenizers import Tokenizer

from contracts.events import DocumentDeleted, DocumentState, UploadOrDelete
from contracts.ids import sha256_of, version_of
from contracts.topics import CHUNKS_READY, DOCUMENT_UPLOADED
from ragbus import metrics
from ragbus.adapters.blobs import BlobError, read_blob
from ragbus.bus import ASSIGNMENT, Bus, Record

from .parsers import UnreadableDocument
from .sandbox import Sandbox
from .settings import ChunkerSettings
from .transform import chunk_document

GROUP = "ragbus-chunker"


def register(
    broker: KafkaBroker, bus: Bus, settings: ChunkerSettings, tokenizer: Tokenizer
) -> Sandbox:
    """Subscribe the chunker to `document.uploaded`; return the parsers' sandbox, for the
    service to close at shutdown."""
    # Parsing runs in worker processes: a hostile file costs a worker, not the chunker.
    sandbox = Sandbox(settings.sandbox_limits(), settings.extract_workers, resident=[tokenizer])

    @broker.subscriber(
        DOCUMENT_UPLOADED,
        group_id=GROUP,
        auto_offset_reset="earliest",
        # Commit only after the chunks are published; an error leaves the offset for a retry.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        partition_assignment_strategy=ASSIGNMENT,
        max_poll_interval_ms=15 * 60 * 1000,
        title="chunker",
        description="Parse and split uploaded documents into chunks; pass deletions on.",
    )
    async def on_document_uploaded(message: KafkaMessage) -> None:
        await bus.process([message.raw_message], handle)

    async def handle(records: Sequence[Record]) -> None:
        (record,) = records
        event = await bus.decode(record, UploadOrDelete)
        if event is None:
            return
        if isinstance(event, DocumentDeleted):
            await bus.publish(CHUNKS_READY, [event])
            return
        started = time.perf_counter()
        try:
            data = await asyncio.to_thread(
                read_blob, event.blob_uri, settings.max_blob_bytes, settings.readable_blob_roots
            )
        except BlobError as exc:
            await bus.dead_letter(record, str(exc), type(exc).__name__, version=event.version)
            return
        # Producers may leave the version out; the status needs it to tell versions apart.
        version = event.version or version_of(sha256_of(data))
        await bus.report(event, DocumentState.CHUNKING, filename=event.filename, version=version)
        try:
            batches = await asyncio.to_thread(
                sandbox.run, chunk_document, event, data, tokenizer, **settings.split()
            )
        except UnreadableDocument as exc:
            await bus.dead_letter(record, str(exc), type(exc).__name__, version=version)
            return
        seconds = time.perf_counter() - started
        # Reported before the chunks go out, so it reaches document.status before the
        # embedder's update about them.
        await bus.report(
            batches[0],
            DocumentState.EMBEDDING,
            filename=event.filename,
            chunks=batches[0].total_chunks,
        )
        await bus.publish(CHUNKS_READY, batches)
        metrics.STAGE_SECONDS.labels("chunker").observe(seconds)
        metrics.CHUNKS.labels("chunker").inc(batches[0].total_chunks)
        metrics.MESSAGES.labels("chunker", DOCUMENT_UPLOADED, "ok").inc()

    return sandbox
