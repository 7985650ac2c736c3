"""Document status over REST and SSE."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent

from contracts.events import DocumentState
from contracts.status import DocumentRecord
from ragbus.auth import Tenant
from ragbus.service import app_state
from ragbus.sse import event_stream, frame
from services.status.board import StatusBoard
from services.status.settings import StatusSettings

router = APIRouter(prefix="/v1/documents", tags=["status"])


class DocumentStatus(BaseModel):
    document_id: str
    state: DocumentState
    reason: str | None
    version: str | None
    filename: str | None
    chunks: int | None
    indexed_chunks: int | None
    timings_ms: dict[str, float]
    updated_at: str


class DocumentList(BaseModel):
    documents: list[DocumentStatus]
    counts: dict[DocumentState, int]


def view(record: DocumentRecord) -> DocumentStatus:
    return DocumentStatus(
        **record.model_dump(exclude={"tenant_id", "updated_at"}),
        updated_at=record.updated_at.isoformat(),
    )


Board = Annotated[StatusBoard, Depends(app_state("board"))]
Settings = Annotated[StatusSettings, Depends(app_state("settings"))]


@router.get("/stream", response_class=EventSourceResponse)
async def stream_status(
    tenant: Tenant, board: Board, settings: Settings, document_id: str | None = None
) -> EventSourceResponse:
    """SSE: the current state of the tenant's documents (or one) as `state` events, a `ready`
    event, then every change as it happens. A tenant holds a bounded number open at once."""
    if board.streams(tenant) >= settings.max_streams_per_tenant:
        raise HTTPException(
            429,
            f"{settings.max_streams_per_tenant} status streams are open for this tenant "
            "(RAGBUS_MAX_STREAMS_PER_TENANT): close one first",
        )

    async def frames() -> AsyncIterator[ServerSentEvent]:
        sent = 0
        async for record in board.watch(tenant, document_id):
            if record is None:
                yield frame("ready", {"documents": sent})
            else:
                sent += 1
                yield frame("state", view(record))

    return event_stream(frames())


@router.get("", response_model=DocumentList)
def list_documents(
    tenant: Tenant,
    board: Board,
    state: DocumentState | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 100,
) -> DocumentList:
    """The tenant's documents, most recently changed first, and the count in each state."""
    every = board.list(tenant)
    counts = {name: 0 for name in DocumentState}
    for record in every:
        counts[record.state] += 1
    chosen = [r for r in every if state is None or r.state is state][:limit]
    return DocumentList(documents=[view(r) for r in chosen], counts=counts)


@router.get("/{document_id}", response_model=DocumentStatus)
def get_document(document_id: str, tenant: Tenant, board: Board) -> DocumentStatus:
    record = board.get(tenant, document_id)
    if record is None:
        raise HTTPException(404, f"no document {document_id!r}")
    return view(record)
