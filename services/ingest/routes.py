"""`POST /v1/documents`: multipart files or JSON text documents, answered 202 at once;
`DELETE /v1/documents/{id}`: a tombstone through the pipeline."""

import asyncio
import contextlib
import logging
import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from contracts.events import (
    DocumentDeleted,
    DocumentState,
    DocumentUploaded,
    Metadata,
    describe_validation_error,
)
from contracts.ids import sha256_of
from contracts.status import DocumentTable
from contracts.topics import DOCUMENT_STATUS, DOCUMENT_UPLOADED, MAX_MESSAGE_BYTES
from ragbus.adapters.blobs import BlobStore
from ragbus.auth import Tenant
from ragbus.bus import Bus, encode, status_update
from ragbus.service import app_state

from .settings import IngestSettings
from .transform import RejectedUpload, check_upload, clean_filename, is_unchanged, uploaded_event

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["documents"])


class TextDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    title: str | None = Field(default=None, max_length=256)
    metadata: Metadata = Field(default_factory=dict)


class TextDocuments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    documents: list[TextDocument] = Field(min_length=1)


class Accepted(BaseModel):
    document_id: str
    filename: str
    version: str
    status: DocumentState = DocumentState.RECEIVED
    unchanged: bool = Field(
        default=False,
        description="this version is indexed or on its way already: nothing was re-processed",
    )


class DeletionAccepted(BaseModel):
    document_id: str
    filename: str | None
    status: DocumentState = Field(description="the state now; DELETED once the points are gone")


class AcceptedDocuments(BaseModel):
    documents: list[Accepted]


Store = Annotated[BlobStore, Depends(app_state("blobs"))]
Publisher = Annotated[Bus, Depends(app_state("bus"))]
Settings = Annotated[IngestSettings, Depends(app_state("settings"))]
Board = Annotated[DocumentTable, Depends(app_state("board"))]


class Deletions:
    """The documents this process deleted and that were not uploaded since. Until the tombstone
    has gone through, a late status of the deleted upload (the chunker still at work on it) may
    fold into the board over the local DELETED; the same bytes uploaded again are new all the
    same. Kept `keep_s` at most."""

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self._at: dict[str, float] = {}

    def add(self, document_id: str) -> None:
        now = time.monotonic()
        self._at = {d: at for d, at in self._at.items() if now - at < self.keep_s}
        self._at[document_id] = now

    def __contains__(self, document_id: object) -> bool:
        return document_id in self._at

    def discard(self, document_id: str) -> None:
        self._at.pop(document_id, None)


Deleted = Annotated[Deletions, Depends(app_state("deletions"))]

_BODIES: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "metadata": {"type": "string", "description": "JSON object for all files"},
                    },
                }
            },
            "application/json": {"schema": TextDocuments.model_json_schema()},
        },
    }
}


@router.post(
    "/documents",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=AcceptedDocuments,
    openapi_extra=_BODIES,
    summary="Upload documents (multipart files, or JSON text documents)",
)
async def upload_documents(
    request: Request,
    tenant: Tenant,
    store: Store,
    bus: Publisher,
    settings: Settings,
    board: Board,
    deleted: Deleted,
) -> AcceptedDocuments:
    """Store the bytes, publish `document.uploaded` for each document and answer at once;
    progress is on the status service. A request with any unacceptable file is refused whole;
    a document uploaded again unchanged is not processed again."""
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith("multipart/form-data"):
            uploads = await _read_multipart(request, settings)
        elif content_type.startswith("application/json"):
            uploads = await _read_json(request, settings)
        else:
            raise RejectedUpload(415, "send multipart/form-data files or an application/json body")
    except RejectedUpload as exc:
        raise HTTPException(exc.status_code, str(exc)) from exc
    events = []
    for filename, data, file_type, title, metadata in uploads:
        uri, digest = await asyncio.to_thread(store.put, data, tenant)
        events.append(
            uploaded_event(
                tenant_id=tenant,
                filename=filename,
                blob_uri=uri,
                sha256=digest,
                size_bytes=len(data),
                content_type=file_type,
                title=title,
                metadata=metadata,
            )
        )
    for event in events:
        if (size := len(encode(event))) > MAX_MESSAGE_BYTES:
            raise HTTPException(
                413,
                f"{event.filename}: its metadata makes a {size}-byte event, over the "
                f"{MAX_MESSAGE_BYTES}-byte message limit",
            )
    accepted = []
    fresh = []
    for event in events:
        record = board.get(tenant, event.document_id)
        if record is not None and is_unchanged(record, event) and event.document_id not in deleted:
            accepted.append(_accepted(event, record.state, unchanged=True))
            continue
        fresh.append(event)
        accepted.append(_accepted(event, DocumentState.RECEIVED))
    if fresh:
        await _pass_on(fresh, bus, board)
        for event in fresh:
            deleted.discard(event.document_id)
    return AcceptedDocuments(documents=accepted)


async def _pass_on(events: list[DocumentUploaded], bus: Bus, board: DocumentTable) -> None:
    """RECEIVED, then the uploads. Status first: a stage's report always precedes its output,
    so the updates of a document reach document.status in pipeline order; the board takes it
    at once, so a second upload right after this one is judged against it. When the uploads
    cannot be published, the documents are FAILED with the reason (reported where the broker
    still takes it, and on the board in any case), so sending them again is not "unchanged"."""
    try:
        for event in events:
            board.apply(await bus.report(event, DocumentState.RECEIVED, filename=event.filename))
        await bus.publish(DOCUMENT_UPLOADED, events)
    except Exception as exc:
        log.exception("uploads could not be published")
        reason = "ingest: the upload could not be passed on to the pipeline; send it again"
        for event in events:
            failed = status_update(event, "ingest", DocumentState.FAILED, reason=reason)
            board.apply(failed)
            with contextlib.suppress(Exception):
                await bus.publish(DOCUMENT_STATUS, [failed])
        raise HTTPException(503, f"{reason} ({type(exc).__name__})") from exc


@router.delete(
    "/documents/{document_id}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeletionAccepted,
    summary="Delete a document: every version's points leave the index, the status DELETED",
    responses={404: {"description": "the caller's tenant has no such document"}},
)
async def delete_document(
    document_id: str, tenant: Tenant, bus: Publisher, board: Board, deleted: Deleted
) -> DeletionAccepted:
    """Publish a tombstone on `document.uploaded`: it follows the document's uploads through
    every stage, so whatever was uploaded before it is removed too."""
    record = board.get(tenant, document_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no document {document_id!r}")
    tombstone = DocumentDeleted(document_id=document_id, tenant_id=tenant)
    await bus.publish(DOCUMENT_UPLOADED, [tombstone])
    # This service's view takes the deletion at once: the same bytes uploaded right after it
    # are a new upload (behind the tombstone on the document's partition), not "unchanged".
    deleted.add(document_id)
    board.apply(
        status_update(tombstone, "ingest", DocumentState.DELETED, reason="deletion requested")
    )
    return DeletionAccepted(document_id=document_id, filename=record.filename, status=record.state)


def _accepted(event: DocumentUploaded, state: DocumentState, unchanged: bool = False) -> Accepted:
    return Accepted(
        document_id=event.document_id,
        filename=event.filename,
        version=event.version or "",
        status=state,
        unchanged=unchanged,
    )


_METADATA: TypeAdapter[Metadata] = TypeAdapter(Metadata)
Upload = tuple[str, bytes, str | None, str | None, Metadata]


class FileTooLarge(MultiPartException):
    pass


class CappedParts(MultiPartParser):
    """Starlette's multipart parser, refusing a file as soon as it passes `max_file_bytes`
    (Starlette caps the other fields only: a file spooled on to the end of the request)."""

    def __init__(self, *args: Any, max_file_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_file_bytes = max_file_bytes
        self._file_bytes = 0

    def on_part_begin(self) -> None:
        super().on_part_begin()
        self._file_bytes = 0

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current_part.file is not None:
            self._file_bytes += end - start
            if self._file_bytes > self.max_file_bytes:
                raise FileTooLarge(
                    f"a file is over the {self.max_file_bytes}-byte limit (RAGBUS_MAX_UPLOAD_BYTES)"
                )
        super().on_part_data(data, start, end)


async def _read_multipart(request: Request, settings: IngestSettings) -> list[Upload]:
    # Fields other than files (the metadata) are held in memory: 1 MiB each at most. Files
    # spool to disk as they arrive, each refused once past its limit.
    parser = CappedParts(
        request.headers,
        request.stream(),
        max_files=settings.max_files_per_request,
        max_part_size=1024 * 1024,
        max_file_bytes=settings.max_upload_bytes,
    )
    try:
        form = await parser.parse()
    except FileTooLarge as exc:
        raise RejectedUpload(413, exc.message) from exc
    except MultiPartException as exc:
        raise RejectedUpload(400, exc.message) from exc
    try:
        return await _uploads_of(form, settings)
    finally:
        await form.close()


async def _uploads_of(form: FormData, settings: IngestSettings) -> list[Upload]:
    files = [item for item in form.getlist("files") if isinstance(item, UploadFile)]
    if not files:
        raise RejectedUpload(400, "no files: send one or more multipart fields named 'files'")
    metadata = _parse_metadata(form.get("metadata"))
    uploads: list[Upload] = []
    problems: list[RejectedUpload] = []
    for upload in files:
        try:
            filename = clean_filename(upload.filename)
            check_upload(filename, upload.size or 0, settings.max_upload_bytes)
        except RejectedUpload as exc:
            problems.append(exc)
            continue
        data = await upload.read()
        uploads.append((filename, data, upload.content_type, None, metadata))
    if problems:
        worst = max(problem.status_code for problem in problems)
        raise RejectedUpload(worst, "; ".join(str(problem) for problem in problems))
    return uploads


def _parse_metadata(raw: object) -> Metadata:
    if raw is None:
        return {}
    try:
        return _METADATA.validate_python(orjson.loads(raw if isinstance(raw, str) else b""))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        raise RejectedUpload(
            422, "metadata must be a JSON object of strings, numbers, booleans or null"
        ) from exc


async def _read_json(request: Request, settings: IngestSettings) -> list[Upload]:
    limit = settings.max_json_bytes
    parts = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise RejectedUpload(
                413, f"JSON body over the {limit}-byte limit (RAGBUS_MAX_JSON_BYTES): send files"
            )
        parts.append(part)
    body = b"".join(parts)
    try:
        documents = TextDocuments.model_validate_json(body).documents
    except ValidationError as exc:
        raise RejectedUpload(422, describe_validation_error(exc)) from exc
    if len(documents) > settings.max_text_documents:
        raise RejectedUpload(413, f"more than {settings.max_text_documents} documents")
    uploads: list[Upload] = []
    for document in documents:
        data = document.text.encode()
        name = document.title or f"text-{sha256_of(data)[:16]}"
        filename = clean_filename(name if name.endswith(".txt") else f"{name}.txt")
        uploads.append((filename, data, "text/plain", document.title, document.metadata))
    return uploads
