"""The embedder's rules: `chunks.ready` events in, `vectors.ready` events out.

A tombstone (`DocumentDeleted`) is passed on in its place among the outputs: the chunks before
it are embedded and published first, so the indexer sees a document's events in their order.
Chunks are embedded with the model of the generation they are built for (`embed_model`); one
that is not available here is refused with the reason.
"""

import asyncio
import time
from collections.abc import Sequence

from contracts.events import ChunksOrDelete, ChunksReady, DocumentDeleted, DocumentState
from contracts.topics import CHUNKS_READY, VECTORS_READY
from ragbus import metrics
from ragbus.adapters.embedding import Embedders
from ragbus.ports import EmbeddingBackend, EmbeddingUnavailable
from ragbus.retry import retry
from ragbus.stage import Outcome

from .transform import attach_vectors, texts_of


async def embed_all(events: Sequence[ChunksOrDelete], backends: Embedders) -> Outcome:
    """Embed the chunks of every event, in model batches that stop at each tombstone."""
    outcome = Outcome("embedder")
    pending: list[ChunksReady] = []
    for event in events:
        if isinstance(event, DocumentDeleted):
            await embed_by_model(pending, backends, outcome)
            pending = []
            outcome.publish(VECTORS_READY, event)
        else:
            metrics.MESSAGES.labels("embedder", CHUNKS_READY, "ok").inc()
            pending.append(event)
    await embed_by_model(pending, backends, outcome)
    return outcome


async def embed_by_model(
    events: Sequence[ChunksReady], backends: Embedders, outcome: Outcome
) -> None:
    """One model call per embedding model among `events` (each generation has one model, so
    a generation's events keep their order)."""
    for model in dict.fromkeys(event.embed_model for event in events):
        chosen = [event for event in events if event.embed_model == model]
        try:
            backend = await asyncio.to_thread(backends.get, model)
        except ValueError as exc:
            for event in chosen:
                outcome.reject(event, str(exc), "UnknownModel", event.version)
            continue
        await embed(chosen, backend, outcome)


async def embed(events: Sequence[ChunksReady], backend: EmbeddingBackend, outcome: Outcome) -> None:
    """One model call for the chunks of `events`; retried while the backend is unavailable."""
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
    # Reported before the vectors go out, so it reaches document.status before the indexer's
    # update about them.
    for output in outputs:
        if output.batch == 0:
            outcome.report(
                output, DocumentState.INDEXING, filename=output.source, chunks=output.total_chunks
            )
    outcome.publish(VECTORS_READY, *outputs)
    metrics.BATCH_SIZE.labels("embedder").observe(len(texts))
    metrics.STAGE_SECONDS.labels("embedder").observe(seconds)
    metrics.CHUNKS.labels("embedder").inc(len(texts))
