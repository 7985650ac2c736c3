"""Composition root of the ingest service."""

import asyncio
import logging
from dataclasses import dataclass

from fastapi import FastAPI
from faststream.kafka import KafkaBroker

from contracts.events import DocumentDeleted, DocumentUploaded, GenerationPlan, UploadOrDelete
from contracts.status import DocumentTable
from contracts.topics import DOCUMENT_UPLOADED, INDEX_GENERATIONS
from ragbus.adapters.blobs import BlobStore
from ragbus.bus import Bus, create_broker
from ragbus.service import create_service_app
from ragbus.stage import subscribe
from ragbus.status_feed import follow

from .janitor import BlobReferences
from .routes import router
from .settings import IngestSettings, get_settings

__all__ = ["IngestAdapters", "create_app", "get_settings"]

log = logging.getLogger(__name__)
# Records folded per poll while `document.uploaded` and `index.generations` are replayed.
REPLAY_BATCH = 500


@dataclass(frozen=True)
class IngestAdapters:
    """The ingest service's ports. `blobs` left None is the blob store under the data
    directory, where the chunker reads."""

    blobs: BlobStore | None = None


def create_app(settings: IngestSettings, adapters: IngestAdapters | None = None) -> FastAPI:
    given = adapters or IngestAdapters()
    broker = create_broker(settings, "ingest")
    bus = Bus(broker, "ingest", {DOCUMENT_UPLOADED: DocumentUploaded})
    # What the documents are now: tells an unchanged re-upload, and what a tenant may delete.
    board = DocumentTable(settings.deleted_retention)
    follow(broker, board, "ingest")
    blobs = BlobStore(settings.blob_dir) if given.blobs is None else given.blobs
    references = BlobReferences()
    follow_references(broker, references)
    sweeping: list[asyncio.Task[None]] = []

    async def start_sweeping() -> None:
        sweeping.append(asyncio.create_task(sweep(blobs, references, settings)))

    async def stop_sweeping() -> None:
        for task in sweeping:
            task.cancel()

    return create_service_app(
        "ingest",
        settings,
        broker=broker,
        routers=[router],
        description="Upload documents (each becomes a `document.uploaded` event) and delete them.",
        # Files stream to disk as they arrive (a JSON body is capped lower, in its route).
        max_body_bytes=(settings.max_request_bytes, "RAGBUS_MAX_REQUEST_BYTES"),
        started=[start_sweeping],
        shutdown=[stop_sweeping],
        state={"blobs": blobs, "bus": bus, "board": board, "references": references},
    )


def follow_references(broker: KafkaBroker, references: BlobReferences) -> None:
    """Fold `document.uploaded` (which blobs the documents use) and `index.generations`
    (whether one is being built) from their starts, in no consumer group."""
    uploads = subscribe(
        broker,
        DOCUMENT_UPLOADED,
        UploadOrDelete,
        stage="ingest",
        bus=None,
        group=None,
        max_records=REPLAY_BATCH,
        title="ingest:blobs",
        description="Which blobs the documents' latest uploads use (the others are removed).",
    )

    @uploads
    async def on_uploads(events: list[DocumentUploaded | DocumentDeleted]) -> None:
        for event in events:
            references.apply(event)

    plans = subscribe(
        broker,
        INDEX_GENERATIONS,
        GenerationPlan,
        stage="ingest",
        bus=None,
        group=None,
        max_records=100,
        title="ingest:generations",
        description="No blob is removed while an index generation is being built.",
    )

    @plans
    async def on_plans(events: list[GenerationPlan]) -> None:
        for plan in events:
            references.follow(plan)


async def sweep(blobs: BlobStore, references: BlobReferences, settings: IngestSettings) -> None:
    """Every `blob_sweep_s`, remove the blobs released more than `blob_grace_s` ago."""
    while True:
        await asyncio.sleep(settings.blob_sweep_s)
        for blob in references.removable(settings.blob_grace_s):
            if await asyncio.to_thread(blobs.remove, blob):
                log.info("removed a blob no document uses any more: %s", blob)
            references.removed(blob)
