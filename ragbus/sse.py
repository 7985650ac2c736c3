"""Server-sent events as every ragbus stream sends them, over sse-starlette: named events whose
data is one JSON line, LF line ends, and a comment every 15 s so proxies keep idle streams."""

from collections.abc import AsyncIterator

import orjson
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent

KEEPALIVE_SECONDS = 15.0
SEPARATOR = "\n"


def frame(event: str, data: BaseModel | dict[str, object]) -> ServerSentEvent:
    body = data.model_dump_json() if isinstance(data, BaseModel) else orjson.dumps(data).decode()
    return ServerSentEvent(body, event=event, sep=SEPARATOR)


def event_stream(frames: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    return EventSourceResponse(
        frames,
        headers={"Cache-Control": "no-cache"},
        ping=KEEPALIVE_SECONDS,
        ping_message_factory=lambda: ServerSentEvent(comment="keepalive", sep=SEPARATOR),
        sep=SEPARATOR,
    )
