"""The indexer's rules: `vectors.ready` events in, points written, versions promoted.

Events are applied in their order: the upserts before a tombstone are written (and their
complete versions promoted) before the tombstone removes the document, so a replay of the same
events always ends in the same index.

Each event names the generation it is built for; only what happens to the serving generation
is announced on `index.promoted` and reported on `document.status` (a generation being built,
or kept for a rollback, changes nothing a reader sees). Events of a generation dropped since
are moot: logged, counted and skipped.
"""

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

from qdrant_client.http.exceptions import ResponseHandlingException

from contracts.events import DocumentDeleted, DocumentState, VectorsOrDelete, VectorsReady
from contracts.topics import INDEX_PROMOTED, VECTORS_READY
from ragbus import metrics
from ragbus.adapters.store import StoreRunner
from ragbus.ports import GenerationBusy, Point, UnknownGeneration
from ragbus.retry import retry
from ragbus.stage import Outcome

from .transform import promoted, to_points

TRANSIENT = (ResponseHandlingException, ConnectionError, TimeoutError, GenerationBusy)
T = TypeVar("T")
log = logging.getLogger(__name__)


async def index(events: Sequence[VectorsOrDelete], runner: StoreRunner, dimensions: int) -> Outcome:
    """Write a batch of events to the store; announce each version it completes and each
    document it deletes. Vectors of other dimensions than the index's are refused."""
    started = time.perf_counter()
    outcome = Outcome("indexer")
    pending: list[tuple[VectorsReady, list[Point]]] = []
    for event in events:
        if isinstance(event, DocumentDeleted):
            await write(pending, runner, outcome)
            pending = []
            await delete(event, runner, outcome)
            continue
        if event.dimensions != dimensions:
            # Checked before anything is created: one foreign event must not decide the
            # dimensions of a new collection.
            reason = (
                f"vectors are {event.dimensions}-dimensional, this index takes "
                f"{dimensions} (RAGBUS_VECTOR_DIMENSIONS)"
            )
            outcome.reject(event, reason, "WrongDimensions", event.version)
            continue
        try:
            # The event's own vectors first, then whether the index may hold them (its model).
            points = to_points(event)
            ensure = partial(
                runner.store.ensure_collection, dimensions, event.model, event.generation
            )
            await call(runner, ensure, "collection")
            pending.append((event, points))
        except UnknownGeneration as exc:
            moot(event, exc)
            continue
        except ValueError as exc:
            outcome.reject(event, str(exc), type(exc).__name__, event.version)
            continue
        metrics.MESSAGES.labels("indexer", VECTORS_READY, "ok").inc()
    await write(pending, runner, outcome)
    metrics.STAGE_SECONDS.labels("indexer").observe(time.perf_counter() - started)
    return outcome


def moot(event: VectorsOrDelete, exc: UnknownGeneration) -> None:
    """An event for a generation that is gone: nothing to do, said in the log and metrics."""
    metrics.MESSAGES.labels("indexer", VECTORS_READY, "moot").inc()
    log.info(
        "skipped an event of generation %d: %s",
        event.generation,
        exc,
        extra={"document_id": event.document_id, "trace_id": event.trace_id},
    )


async def serves(runner: StoreRunner, generation: int) -> bool:
    """Whether `generation` is the one readers see (only its changes are announced); before
    any serves, generation 1 is the one that will."""
    serving = await call(runner, runner.store.generation, "generation")
    return serving == generation or (serving == 0 and generation == 1)


async def call(runner: StoreRunner, operation: Callable[[], T], what: str) -> T:
    """A store call on the store's thread, retried while the store is unreachable."""
    return await retry(lambda: runner.run(operation), transient=TRANSIENT, what=what)


async def write(
    batch: Sequence[tuple[VectorsReady, list[Point]]], runner: StoreRunner, outcome: Outcome
) -> None:
    """Upsert a run of batches, then promote each document version they completed."""
    if not batch:
        return
    for generation in sorted({event.generation for event, _ in batch}):
        points = [p for event, ps in batch if event.generation == generation for p in ps]
        await call(runner, partial(runner.store.upsert, points, generation), "upsert")
        metrics.BATCH_SIZE.labels("indexer").observe(len(points))
        metrics.CHUNKS.labels("indexer").inc(len(points))
    # The last batch seen of each document version decides whether it is complete.
    latest = {(event.document_id, event.version): event for event, _ in batch}
    for event in latest.values():
        await promote_if_complete(event, runner, outcome)


async def promote_if_complete(event: VectorsReady, runner: StoreRunner, outcome: Outcome) -> None:
    """Once all of a version's chunks are stored, make it the live one (dropping the older
    versions in the same step) and announce it."""
    store = runner.store
    generation = event.generation
    stored = await call(
        runner, lambda: store.count(event.document_id, event.version, generation), "count"
    )
    if stored < event.total_chunks:
        return
    replaced = await call(
        runner, lambda: store.promote(event.document_id, event.version, generation), "promote"
    )
    if replaced is None:
        log.info(
            "version %s of %s is superseded by a newer live version; removed",
            event.version,
            event.document_id,
            extra={"document_id": event.document_id, "trace_id": event.trace_id},
        )
        return
    if not await serves(runner, generation):
        return
    collection = await call(
        runner,
        lambda: store.ensure_collection(event.dimensions, event.model, generation),
        "collection",
    )
    announcement = promoted(
        event, alias=store.alias, collection=collection, points=stored, replaced=replaced
    )
    outcome.publish(INDEX_PROMOTED, announcement)
    outcome.report(
        event,
        DocumentState.INDEXED,
        filename=event.source,
        chunks=event.total_chunks,
        indexed_chunks=stored,
    )
    metrics.UPLOAD_TO_INDEXED.observe((datetime.now(UTC) - event.uploaded_at).total_seconds())


async def delete(event: DocumentDeleted, runner: StoreRunner, outcome: Outcome) -> None:
    """Remove every version of the document and announce it."""
    store, generation = runner.store, event.generation
    try:
        removed = await call(
            runner,
            lambda: store.delete_document(event.document_id, event.tenant_id, generation),
            "delete",
        )
    except UnknownGeneration as exc:
        moot(event, exc)
        return
    if not await serves(runner, generation):
        return
    outcome.publish(INDEX_PROMOTED, event)
    outcome.report(event, DocumentState.DELETED, reason=f"deleted ({removed} points removed)")
