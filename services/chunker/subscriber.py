"""The chunker's subscriber: `document.uploaded` in, `chunks.ready` out."""

import asyncio
import time

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from tokenizers import Tokenizer

from contracts.events import DocumentState, DocumentUploaded
from contracts.ids import sha256_of, version_of
from contracts.topics import CHUNKS_READY, DOCUMENT_UPLOADED
from ragbus import metrics
from ragbus.blobs import BlobError, read_blob
from ragbus.bus import Bus

from .parsers import UnreadableDocument
from .settings import ChunkerSettings
from .transform import chunk_document

GROUP = "ragbus-chunker"


def register(
    broker: KafkaBroker, bus: Bus, settings: ChunkerSettings, tokenizer: Tokenizer
) -> None:
    """Subscribe the chunker to `document.uploaded`."""

    @broker.subscriber(
        DOCUMENT_UPLOADED,
        group_id=GROUP,
        auto_offset_reset="earliest",
        # Commit only after the chunks are published; an error leaves the offset for a retry.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        max_poll_interval_ms=15 * 60 * 1000,
        title="chunker",
        description="Parse and split uploaded documents into chunks.",
    )
    async def on_document_uploaded(message: KafkaMessage) -> None:
        record = message.raw_message
        event = await bus.decode(record, DocumentUploaded)
        if event is None:
            return
        started = time.perf_counter()
        try:
            data = await asyncio.to_thread(read_blob, event.blob_uri, settings.max_blob_bytes)
        except BlobError as exc:
            await bus.dead_letter(record, str(exc), type(exc).__name__, version=event.version)
            return
        # Producers may leave the version out; the status needs it to tell versions apart.
        version = event.version or version_of(sha256_of(data))
        await bus.report(event, DocumentState.CHUNKING, filename=event.filename, version=version)
        try:
            batches = await asyncio.to_thread(
                chunk_document,
                event,
                data,
                tokenizer,
                max_tokens=settings.max_tokens,
                overlap_tokens=settings.overlap_tokens,
                chunks_per_event=settings.chunks_per_event,
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
