"""A document's lifecycle: status updates folded into one record per document, pure and safe
to replay. The status service serves these records; the ingest service consults them to tell an
unchanged re-upload and to find the documents a tenant may delete.

Updates of one document arrive in causal order (one partition). Within a version the state only
moves forward, so a stage's redelivered update never moves a document back; an ingest RECEIVED
(an upload), a chunker CHUNKING of another version, or progress on a FAILED or DELETED document
(a dead letter replayed after a fix, a producer publishing it again) starts the record afresh.
"""

from collections import deque
from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from contracts.events import DocumentState, StatusUpdate

PIPELINE = (
    DocumentState.RECEIVED,
    DocumentState.CHUNKING,
    DocumentState.EMBEDDING,
    DocumentState.INDEXING,
    DocumentState.INDEXED,
)
TERMINAL = (DocumentState.INDEXED, DocumentState.FAILED, DocumentState.DELETED)
# The time from entering the first state to entering the second is reported under the name.
TIMED = {
    "chunking": (DocumentState.CHUNKING, DocumentState.EMBEDDING),
    "embedding": (DocumentState.EMBEDDING, DocumentState.INDEXING),
    "indexing": (DocumentState.INDEXING, DocumentState.INDEXED),
    "total": (DocumentState.RECEIVED, DocumentState.INDEXED),
}


class DocumentRecord(BaseModel):
    document_id: str
    tenant_id: str
    state: DocumentState
    reason: str | None = None
    version: str | None = None
    filename: str | None = None
    chunks: int | None = None
    indexed_chunks: int | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)
    entered: dict[DocumentState, datetime] = Field(default_factory=dict, exclude=True)
    updated_at: datetime


def _starts_over(record: DocumentRecord, update: StatusUpdate) -> bool:
    if update.state is DocumentState.RECEIVED:
        return True
    if record.state in (DocumentState.FAILED, DocumentState.DELETED):
        return update.state in PIPELINE
    new_version = update.version is not None and update.version != record.version
    return new_version and update.state is DocumentState.CHUNKING


def _is_stale(record: DocumentRecord, update: StatusUpdate) -> bool:
    """An update about an older version, one that would move the state backwards, or one that
    names another tenant (a document is its tenant's alone)."""
    if update.tenant_id != record.tenant_id:
        return True
    if None not in (update.version, record.version) and update.version != record.version:
        return True
    if record.state in (DocumentState.FAILED, DocumentState.DELETED):
        return update.state is not DocumentState.DELETED
    if update.state in (DocumentState.FAILED, DocumentState.DELETED):
        return False
    return PIPELINE.index(update.state) <= PIPELINE.index(record.state)


def fold(record: DocumentRecord | None, update: StatusUpdate) -> DocumentRecord | None:
    """The record after `update`, or None when the update changes nothing."""
    if record is None or (update.tenant_id == record.tenant_id and _starts_over(record, update)):
        record = DocumentRecord(
            document_id=update.document_id,
            tenant_id=update.tenant_id,
            state=update.state,
            version=update.version,
            filename=update.filename,
            updated_at=update.occurred_at,
        )
    elif _is_stale(record, update):
        return None
    entered = {**record.entered, update.state: update.occurred_at}
    changes = {
        "state": update.state,
        "reason": update.reason,
        "version": update.version or record.version,
        "filename": update.filename or record.filename,
        "chunks": update.chunks if update.chunks is not None else record.chunks,
        "indexed_chunks": (
            update.indexed_chunks if update.indexed_chunks is not None else record.indexed_chunks
        ),
        "entered": entered,
        "timings_ms": _timings(entered),
        "updated_at": update.occurred_at,
    }
    return record.model_copy(update=changes)


def _timings(entered: dict[DocumentState, datetime]) -> dict[str, float]:
    return {
        name: round((entered[end] - entered[start]).total_seconds() * 1000, 1)
        for name, (start, end) in TIMED.items()
        if start in entered and end in entered
    }


class DocumentTable:
    """Every document's record, folded from `document.status`: what the status service serves
    and what the ingest service consults (an unchanged re-upload, a document a tenant may
    delete). A DELETED record is forgotten `deleted_retention` after its deletion (measured on
    the updates' own times), so the table holds the documents that exist and the recent
    deletions, not every document ever seen."""

    def __init__(self, deleted_retention: timedelta | None = None) -> None:
        self.records: dict[str, DocumentRecord] = {}
        self.deleted_retention = deleted_retention
        self._deletions: deque[tuple[datetime, str]] = deque()

    def apply(self, update: StatusUpdate) -> DocumentRecord | None:
        """Fold one update in; the changed record, or None when nothing changed."""
        record = fold(self.records.get(update.document_id), update)
        if record is not None:
            self.records[update.document_id] = record
            if record.state is DocumentState.DELETED:
                self._deletions.append((record.updated_at, record.document_id))
        self._forget_deleted(update.occurred_at)
        return record

    def _forget_deleted(self, now: datetime) -> None:
        if self.deleted_retention is None:
            return
        while self._deletions and now - self._deletions[0][0] > self.deleted_retention:
            deleted_at, document_id = self._deletions.popleft()
            record = self.records.get(document_id)
            # Unless the document came back (or was deleted again later) since.
            if record and record.state is DocumentState.DELETED and record.updated_at == deleted_at:
                del self.records[document_id]

    def get(self, tenant_id: str, document_id: str) -> DocumentRecord | None:
        record = self.records.get(document_id)
        return record if record is not None and record.tenant_id == tenant_id else None

    def list(
        self, tenant_id: str, state: DocumentState | None = None, limit: int | None = None
    ) -> list[DocumentRecord]:
        # A copy first, taken in one step: another thread may fold updates in meanwhile (a
        # generator over the live dict raised "dictionary changed size during iteration").
        everything = list(self.records.values())
        matching = (
            record
            for record in everything
            if record.tenant_id == tenant_id and (state is None or record.state is state)
        )
        return sorted(matching, key=lambda record: record.updated_at, reverse=True)[:limit]
