"""Server-sent events as every ragbus stream sends them, over sse-starlette: named events whose
data is one JSON line, LF line ends, and a comment every 15 s so proxies keep idle streams. A
stream that fails unexpectedly still ends with an `error` event (the cause goes to the log)."""

import logging
from collections.abc import AsyncIterator

import orjson
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0
SEPARATOR = "\n"


def frame(event: str, data: BaseModel | dict[str, object]) -> ServerSentEvent:
    body = data.model_dump_json() if isinstance(data, BaseModel) else orjson.dumps(data).decode()
    return ServerSentEvent(body, event=event, sep=SEPARATOR)


async def _ending(frames: AsyncIterator[ServerSentEvent]) -> AsyncIterator[ServerSentEvent]:
    try:
        async for each in frames:
            yield each
    except Exception:
        log.exception("a stream failed")
        failure: dict[str, object] = {
            "stage": "internal",
            "message": "the service failed unexpectedly (see its log)",
        }
        yield frame("error", failure)


def event_stream(frames: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    return EventSourceResponse(
        _ending(frames),
        headers={"Cache-Control": "no-cache"},
        ping=KEEPALIVE_SECONDS,
        ping_message_factory=lambda: ServerSentEvent(comment="keepalive", sep=SEPARATOR),
        sep=SEPARATOR,
    )
