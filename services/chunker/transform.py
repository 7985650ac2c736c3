"""From an uploaded document's bytes to its `chunks.ready` events: pure and deterministic."""

from tokenizers import Tokenizer

from contracts.events import Chunk, ChunksReady, DocumentUploaded
from contracts.ids import chunk_id, sha256_of, version_of

from .parsers import DEFAULT_LIMITS, Limits, UnreadableDocument, extract_text
from .splitter import split_text


def chunk_document(
    event: DocumentUploaded,
    data: bytes,
    tokenizer: Tokenizer,
    *,
    max_tokens: int,
    overlap_tokens: int,
    chunks_per_event: int,
    limits: Limits = DEFAULT_LIMITS,
) -> list[ChunksReady]:
    """Parse, split and batch one document version. Raises UnreadableDocument with the reason
    when the bytes cannot give text within `limits` (or are not the bytes the event names)."""
    digest = sha256_of(data)
    if event.sha256 and event.sha256 != digest:
        raise UnreadableDocument(
            f"content sha256 {digest} does not match the event's {event.sha256}"
        )
    version = event.version or version_of(digest)
    extracted = extract_text(data, event.filename, event.content_type, limits)
    spans = split_text(
        extracted.text, tokenizer, max_tokens=max_tokens, overlap_tokens=overlap_tokens
    )
    if not spans:
        raise UnreadableDocument("no extractable text")
    chunks = [
        Chunk(
            chunk_id=chunk_id(event.document_id, version, ordinal),
            ordinal=ordinal,
            text=span.text,
            token_count=span.token_count,
        )
        for ordinal, span in enumerate(spans)
    ]
    return batches_of(event, version, event.title or extracted.title, chunks, chunks_per_event)


def batches_of(
    event: DocumentUploaded,
    version: str,
    title: str | None,
    chunks: list[Chunk],
    chunks_per_event: int,
) -> list[ChunksReady]:
    """The `chunks.ready` events of one document version's chunks, `chunks_per_event` each."""
    return [
        ChunksReady(
            document_id=event.document_id,
            tenant_id=event.tenant_id,
            trace_id=event.trace_id,
            version=version,
            source=event.filename,
            title=title,
            metadata=event.metadata,
            total_chunks=len(chunks),
            batch=number,
            uploaded_at=event.occurred_at,
            chunks=chunks[start : start + chunks_per_event],
        )
        for number, start in enumerate(range(0, len(chunks), chunks_per_event))
    ]
