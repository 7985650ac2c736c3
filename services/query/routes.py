"""`POST /v1/query` (JSON) and `POST /v1/query/stream` (SSE) over the promoted index."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from sse_starlette import EventSourceResponse, ServerSentEvent

from ragbus.auth import Tenant
from ragbus.service import app_state
from ragbus.sse import event_stream, frame

from .conversations import ConversationLog
from .models import Done, Failure, QueryRequest, QueryResponse, Retrieval
from .pipeline import EVENT_NAMES, QueryDeps, QueryEvent, answer
from .transform import Exchange

router = APIRouter(prefix="/v1", tags=["query"])

# A failed step maps to the HTTP status a JSON client sees (SSE clients get an `error` event).
FAILURE_STATUS = {"request": 422, "retrieve": 503, "generate": 502}


Deps = Annotated[QueryDeps, Depends(app_state("deps"))]
Conversations = Annotated[ConversationLog, Depends(app_state("conversations"))]


async def _conversation_events(
    deps: QueryDeps, conversations: ConversationLog, tenant: str, body: QueryRequest
) -> AsyncIterator[QueryEvent]:
    """The question's events, with the conversation's history in and this turn recorded after."""
    history: list[Exchange] = []
    if body.conversation_id:
        turns = conversations.history(tenant, body.conversation_id)
        history = [Exchange(turn.question, turn.answer) for turn in turns]
    async for event in answer(deps, tenant, body, history):
        if isinstance(event, Done) and body.conversation_id:
            await conversations.append(
                tenant, body.conversation_id, body.question, event.answer or ""
            )
        yield event


@router.post(
    "/query",
    response_model=QueryResponse,
    responses={
        502: {"description": "the language model failed"},
        503: {"description": "retrieval failed"},
    },
)
async def query(
    body: QueryRequest, tenant: Tenant, deps: Deps, conversations: Conversations
) -> QueryResponse:
    """Answer with numbered citations (`generate: false`: retrieval only)."""
    retrieval: Retrieval | None = None
    async for event in _conversation_events(deps, conversations, tenant, body):
        if isinstance(event, Failure):
            raise HTTPException(FAILURE_STATUS.get(event.stage, 500), event.model_dump())
        if isinstance(event, Retrieval):
            retrieval = event
        elif isinstance(event, Done) and retrieval is not None:
            return QueryResponse(
                answer=event.answer,
                citations=retrieval.passages,
                cited=[citation.n for citation in event.citations],
                question=retrieval.question,
                generation=retrieval.generation,
                mode=retrieval.mode,
                rerank=retrieval.rerank,
                model=event.model,
                cached=event.cached,
                timings_ms=event.timings_ms,
            )
    raise HTTPException(500, "the query ended without an answer")


@router.post(
    "/query/stream",
    response_class=EventSourceResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "SSE events: `retrieval`, then `token` and `citation` as the answer "
            "streams, then `done`; or `error` (`{stage, message}`) at any point",
        }
    },
)
async def query_stream(
    body: QueryRequest, tenant: Tenant, deps: Deps, conversations: Conversations
) -> EventSourceResponse:
    """The answer token by token, each passage announced when first cited."""

    async def frames() -> AsyncIterator[ServerSentEvent]:
        async for event in _conversation_events(deps, conversations, tenant, body):
            yield frame(EVENT_NAMES[type(event)], event)

    return event_stream(frames())
