"""Server-sent events: one framing function and a response that keeps idle streams alive."""

import asyncio
from collections.abc import AsyncIterator

import orjson
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

KEEPALIVE_SECONDS = 15.0


def frame(event: str, data: BaseModel | dict[str, object]) -> bytes:
    body = data.model_dump_json() if isinstance(data, BaseModel) else orjson.dumps(data).decode()
    return f"event: {event}\ndata: {body}\n\n".encode()


async def _with_keepalive(frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    iterator = aiter(frames)
    pending = asyncio.ensure_future(anext(iterator))
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_SECONDS)
            if not done:
                yield b": keepalive\n\n"
                continue
            try:
                yield pending.result()
            except StopAsyncIteration:
                return
            pending = asyncio.ensure_future(anext(iterator))
    finally:
        pending.cancel()


def event_stream(frames: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        _with_keepalive(frames),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
