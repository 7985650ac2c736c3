"""Events for the stage tests, and what a stage published in a form a test compares at a glance."""

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from contracts.events import (
    DocumentDeleted,
    DocumentRef,
    DocumentUploaded,
    EmbeddedChunk,
    IndexPromoted,
    StatusUpdate,
    VectorsReady,
)
from contracts.ids import chunk_id
from contracts.vectors import pack

UPLOADED_AT = datetime(2025, 1, 1, tzinfo=UTC)


def uploaded(document_id: str = "a", version: str | None = "v1") -> DocumentUploaded:
    """Tenant acme's document `<id>.md`, at `file:///blobs/<id>`."""
    return DocumentUploaded(
        document_id=document_id,
        tenant_id="acme",
        blob_uri=f"file:///blobs/{document_id}",
        filename=f"{document_id}.md",
        version=version,
        occurred_at=UPLOADED_AT,
    )


def deleted(document_id: str = "a", tenant_id: str = "acme") -> DocumentDeleted:
    return DocumentDeleted(document_id=document_id, tenant_id=tenant_id)


def vectors_ready(
    ordinals: Iterable[int],
    *,
    total: int,
    version: str = "v1",
    batch: int = 0,
    document_id: str = "doc",
    tenant_id: str = "acme",
    uploaded_at: datetime = UPLOADED_AT,
    dimensions: int = 4,
    vector_length: int | None = None,
    source: str | None = None,
    model: str = "fake-embedder",
    **fields: Any,
) -> VectorsReady:
    """A batch of `document_id`'s chunks `ordinals` of `version` (of `total` in all), from
    `source` (default `<id>.md`); chunk n's vector is the n-th unit vector (of `vector_length`
    when it is not the declared `dimensions`). `fields` sets others (title, metadata)."""
    length = dimensions if vector_length is None else vector_length
    return VectorsReady(
        document_id=document_id,
        tenant_id=tenant_id,
        version=version,
        source=source or f"{document_id}.md",
        total_chunks=total,
        batch=batch,
        uploaded_at=uploaded_at,
        model=model,
        dimensions=dimensions,
        chunks=[
            EmbeddedChunk(
                chunk_id=chunk_id(document_id, version, n),
                ordinal=n,
                text=f"chunk {n} of {version}",
                token_count=4,
                vector=pack(np.eye(length, dtype=np.float32)[n % length]),
            )
            for n in ordinals
        ],
        **fields,
    )


def index_promoted(document_id: str, version: str = "v1", points: int = 1) -> IndexPromoted:
    """Tenant acme's `document_id` promoted at `version` in the first generation of "ragbus"."""
    return IndexPromoted(
        document_id=document_id,
        tenant_id="acme",
        version=version,
        alias="ragbus",
        collection="ragbus_g1",
        generation=1,
        points=points,
        uploaded_at=UPLOADED_AT,
    )


def kinds(published: Iterable[tuple[str, object]]) -> list[tuple[str, str, str]]:
    """(topic, event) pairs as (topic, document, what): a status update's state, `batch N` for
    a batch of chunks or vectors, else the event type."""

    def what(event: object) -> str:
        if isinstance(event, StatusUpdate):
            return event.state.value
        if isinstance(event, DocumentRef):
            return f"batch {event.batch}"
        return type(event).__name__

    return [(topic, getattr(event, "document_id", ""), what(event)) for topic, event in published]
