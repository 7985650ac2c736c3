"""Composition root of the ingest service."""

from dataclasses import dataclass

from fastapi import FastAPI

from contracts.events import DocumentUploaded
from contracts.status import DocumentTable
from contracts.topics import DOCUMENT_UPLOADED
from ragbus.adapters.blobs import BlobStore
from ragbus.bus import Bus, create_broker
from ragbus.service import create_service_app
from ragbus.status_feed import follow

from .routes import router
from .settings import IngestSettings, get_settings

__all__ = ["IngestAdapters", "create_app", "get_settings"]


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
    return create_service_app(
        "ingest",
        settings,
        broker=broker,
        routers=[router],
        description="Upload documents (each becomes a `document.uploaded` event) and delete them.",
        # Files stream to disk as they arrive (a JSON body is capped lower, in its route).
        max_body_bytes=(settings.max_request_bytes, "RAGBUS_MAX_REQUEST_BYTES"),
        state={
            "blobs": BlobStore(settings.blob_dir) if given.blobs is None else given.blobs,
            "bus": bus,
            "board": board,
        },
    )
