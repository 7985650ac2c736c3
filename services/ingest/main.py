"""Composition root of the ingest service."""

import asyncio
import contextlib
from dataclasses import dataclass

from fastapi import FastAPI

from contracts.events import DeadLetter, DocumentUploaded
from contracts.status import DocumentTable
from contracts.topics import DOCUMENT_UPLOADED, TENANT_UPLOADS_DLQ
from ragbus.adapters.blobs import BlobStore
from ragbus.bus import Bus, create_broker
from ragbus.service import create_service_app
from ragbus.status_feed import follow

from . import gateway
from .janitor import BlobReferences
from .routes import Deletions, router
from .settings import IngestSettings, get_settings
from .subscriber import follow_references, sweep

__all__ = ["IngestAdapters", "create_app", "get_settings"]


@dataclass(frozen=True)
class IngestAdapters:
    """The ingest service's ports. `blobs` left None is the blob store under the data
    directory, where the chunker reads."""

    blobs: BlobStore | None = None


def create_app(settings: IngestSettings, adapters: IngestAdapters | None = None) -> FastAPI:
    given = adapters or IngestAdapters()
    # A tenant's upload topic made while the service runs is read within 10 s.
    broker = create_broker(settings, "ingest", metadata_max_age_ms=10_000)
    bus = Bus(
        broker, "ingest", {DOCUMENT_UPLOADED: DocumentUploaded, TENANT_UPLOADS_DLQ: DeadLetter}
    )
    gateway.register(broker, bus)
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
            with contextlib.suppress(asyncio.CancelledError):
                await task

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
        state={
            "blobs": blobs,
            "bus": bus,
            "board": board,
            "references": references,
            "deletions": Deletions(settings.deleted_retention.total_seconds()),
        },
    )
