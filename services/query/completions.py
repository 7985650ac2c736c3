"""`POST /v1/chat/completions` and `GET /v1/models`: the OpenAI API over the index, so any OpenAI
client (`base_url=http://host:8082/v1`, `model="ragbus"`) gets grounded, cited answers.

The last user message is the question; earlier user/assistant pairs are the conversation, used
to rewrite a follow-up. Retrieval options go in the body next to the OpenAI fields (the SDK's
`extra_body`): `top_k`, `filters`, `mode`, `rerank`. Cited passages come back in `citations`.
"""

import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Self

import orjson
from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ragbus.auth import Tenant

from .models import (
    QUESTION_CHARS,
    Citation,
    Done,
    Failure,
    Filters,
    Mode,
    QueryRequest,
    Token,
    TopK,
)
from .pipeline import answer
from .routes import FAILURE_STATUS, Deps
from .transform import Exchange

log = logging.getLogger(__name__)
# A conversation sent whole with each request is bounded: the turns a rewrite reads are the last
# `history_turns` anyway.
MAX_MESSAGES = 256
MAX_MESSAGE_CHARS = 32_000
router = APIRouter(prefix="/v1", tags=["openai"])


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str = Field(max_length=32)
    content: str | list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        if len(self.text) > MAX_MESSAGE_CHARS:
            raise ValueError(f"a message holds at most {MAX_MESSAGE_CHARS} characters")
        return self

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(part.get("text", "")) for part in self.content)
        return self.content or ""


class ChatRequest(BaseModel):
    # OpenAI clients send many optional fields (temperature, n, stream_options, …); the index
    # decides the answer, so those are accepted and ignored.
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    top_k: TopK = 5
    filters: Filters = Field(default_factory=dict)
    mode: Mode = "hybrid"
    rerank: bool | None = None


def _error(status: int, message: str, kind: str, code: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": code}}, status)


def _split(messages: list[ChatMessage]) -> tuple[str, list[Exchange]]:
    """The last user message, and the user/assistant exchanges before it."""
    turns = [m for m in messages if m.role in ("user", "assistant")]
    question = turns[-1].text if turns and turns[-1].role == "user" else ""
    history: list[Exchange] = []
    pending: str | None = None
    for message in turns[:-1]:
        if message.role == "user":
            pending = message.text
        elif pending is not None:
            history.append(Exchange(pending, message.text))
            pending = None
    return question, history


@router.get("/models")
async def models(deps: Deps) -> dict[str, Any]:
    """The index is the model."""
    alias = deps.settings.collection_alias
    return {"object": "list", "data": [{"id": alias, "object": "model", "owned_by": "ragbus"}]}


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    body: ChatRequest, tenant: Tenant, deps: Deps
) -> JSONResponse | StreamingResponse:
    """A chat completion answered from the index named by `model`."""
    alias = deps.settings.collection_alias
    if body.model != alias:
        return _error(
            404,
            f"model {body.model!r} not found; this service serves {alias!r}",
            "invalid_request_error",
            "model_not_found",
        )
    question, history = _split(body.messages)
    if not question.strip():
        return _error(
            400,
            "the last message must be a non-empty user message",
            "invalid_request_error",
            "invalid_messages",
        )
    request = QueryRequest(
        question=question[:QUESTION_CHARS],
        top_k=body.top_k,
        filters=body.filters,
        mode=body.mode,
        rerank=body.rerank,
    )
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    events = answer(deps, tenant, request, history[-deps.settings.history_turns :])
    if body.stream:
        return StreamingResponse(
            _chunks(events, completion_id, created, alias),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    async for event in events:
        if isinstance(event, Failure):
            return _error(
                FAILURE_STATUS.get(event.stage, 500), event.message, "server_error", event.stage
            )
        if isinstance(event, Done):
            return JSONResponse(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": alias,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": event.answer or ""},
                            "finish_reason": "stop",
                        }
                    ],
                    "citations": _dump(event.citations),
                    "usage": None,
                }
            )
    return _error(500, "the query ended without an answer", "server_error", "internal")


def _dump(citations: list[Citation]) -> list[dict[str, Any]]:
    return [citation.model_dump(mode="json") for citation in citations]


async def _chunks(
    events: AsyncIterator[Any], completion_id: str, created: int, model: str
) -> AsyncIterator[bytes]:
    def chunk(delta: dict[str, str], finish: str | None, **extra: Any) -> bytes:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return b"data: " + orjson.dumps(body) + b"\n\n"

    def failed(message: str, code: str) -> bytes:
        error = {"message": message, "type": "server_error", "code": code}
        return b"data: " + orjson.dumps({"error": error}) + b"\n\n"

    yield chunk({"role": "assistant"}, None)
    try:
        async for event in events:
            if isinstance(event, Token):
                yield chunk({"content": event.text}, None)
            elif isinstance(event, Done):
                yield chunk({}, "stop", citations=_dump(event.citations))
            elif isinstance(event, Failure):
                yield failed(event.message, event.stage)
                break
    except Exception:
        log.exception("a chat completion stream failed")
        yield failed("the service failed unexpectedly (see its log)", "internal")
    yield b"data: [DONE]\n\n"
