"""From `vectors.ready` to store points and the promotion event: pure, no I/O."""

from contracts.events import IndexPromoted, VectorsReady
from contracts.vectors import unpack
from ragbus.ports import Point, generation_of
from ragbus.sparse import encode_document


def to_points(event: VectorsReady) -> list[Point]:
    """Points keyed by chunk id (document, version, ordinal): a replay overwrites, never adds.
    Each carries the embedder's dense vector and a BM25 sparse vector of the chunk's text."""
    base = {
        "document_id": event.document_id,
        "tenant_id": event.tenant_id,
        "version": event.version,
        "source": event.source,
        "title": event.title,
        "metadata": event.metadata,
        "uploaded_at": event.uploaded_at.isoformat(),
        "generation": event.generation,
    }
    return [
        Point(
            id=chunk.chunk_id,
            vector=unpack(chunk.vector, event.dimensions).tolist(),
            sparse=encode_document(chunk.text),
            payload={**base, "ordinal": chunk.ordinal, "text": chunk.text},
        )
        for chunk in event.chunks
    ]


def promoted(
    event: VectorsReady, *, alias: str, collection: str, points: int, replaced: int
) -> IndexPromoted:
    return IndexPromoted(
        document_id=event.document_id,
        tenant_id=event.tenant_id,
        trace_id=event.trace_id,
        version=event.version,
        alias=alias,
        collection=collection,
        generation=generation_of(collection),
        points=points,
        replaced_versions=replaced,
        uploaded_at=event.uploaded_at,
    )
