"""The chunker's rules: a `document.uploaded` event in, `chunks.ready` events out (tombstones
passed on), an unreadable blob or document refused with its reason.

Each run is for one index generation (`GenerationPlan`; None: generation 1 before any plan
was written): its outputs carry the generation and its embedding model, and a generation that
does not serve is built quietly (no progress on `document.status`)."""

import asyncio
import time
from collections.abc import Callable, Sequence

from contracts.events import (
    ChunksReady,
    DocumentDeleted,
    DocumentState,
    DocumentUploaded,
    GenerationPlan,
    UploadOrDelete,
)
from contracts.ids import sha256_of, version_of
from contracts.topics import CHUNKS_READY, DOCUMENT_UPLOADED
from ragbus import metrics
from ragbus.adapters.blobs import BlobError
from ragbus.stage import Outcome

from .parsers import UnreadableDocument

# (blob URI, the event's tenant) → the bytes.
ReadBlob = Callable[[str, str], bytes]
"""The bytes behind a blob URI (raises `BlobError`)."""
Split = Callable[[DocumentUploaded, bytes], list[ChunksReady]]
"""A document's chunks, in batches (raises `UnreadableDocument`)."""


async def chunk_all(
    events: Sequence[UploadOrDelete],
    read: ReadBlob,
    split: Split,
    plan: GenerationPlan | None = None,
) -> Outcome:
    generation = plan.generation if plan else 1
    quiet = plan is not None and plan.state != "serving"
    outcome = Outcome("chunker", quiet=quiet)
    for event in events:
        if isinstance(event, DocumentDeleted):
            outcome.publish(CHUNKS_READY, event.model_copy(update={"generation": generation}))
        else:
            await chunk(event, read, split, outcome)
    stamp = {
        "generation": generation,
        "quiet": quiet,
        "embed_model": plan.embed_model if plan else None,
    }
    outcome.published = [
        (topic, event.model_copy(update=stamp) if isinstance(event, ChunksReady) else event)
        for topic, event in outcome.published
    ]
    return outcome


async def chunk(event: DocumentUploaded, read: ReadBlob, split: Split, outcome: Outcome) -> None:
    """Read the document's blob, parse and split it (both off the event loop)."""
    started = time.perf_counter()
    try:
        data = await asyncio.to_thread(read, event.blob_uri, event.tenant_id)
    except BlobError as exc:
        outcome.reject(event, str(exc), type(exc).__name__, event.version)
        return
    # Producers may leave the version out; the status needs it to tell versions apart.
    version = event.version or version_of(sha256_of(data))
    outcome.report(event, DocumentState.CHUNKING, filename=event.filename, version=version)
    try:
        batches = await asyncio.to_thread(split, event, data)
    except UnreadableDocument as exc:
        outcome.reject(event, str(exc), type(exc).__name__, version)
        return
    # Reported before the chunks go out, so it reaches document.status before the embedder's
    # update about them.
    outcome.report(
        batches[0], DocumentState.EMBEDDING, filename=event.filename, chunks=batches[0].total_chunks
    )
    outcome.publish(CHUNKS_READY, *batches)
    metrics.STAGE_SECONDS.labels("chunker").observe(time.perf_counter() - started)
    metrics.CHUNKS.labels("chunker").inc(batches[0].total_chunks)
    metrics.MESSAGES.labels("chunker", DOCUMENT_UPLOADED, "ok").inc()
