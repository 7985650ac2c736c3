"""The SSE wire format every ragbus stream uses, read byte for byte off an in-process app."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent

from ragbus import sse

pytestmark = pytest.mark.unit


class Token(BaseModel):
    text: str
    n: int


async def body_of(frames: AsyncIterator[ServerSentEvent]) -> httpx.Response:
    app = FastAPI()

    @app.get("/stream")
    async def stream() -> EventSourceResponse:
        return sse.event_stream(frames)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sse") as client:
        return await client.get("/stream")


async def test_events_are_named_with_one_compact_json_line_and_the_stream_ends():
    async def frames() -> AsyncIterator[ServerSentEvent]:
        yield sse.frame("token", Token(text="Den\nver «é»", n=1))
        yield sse.frame("ready", {"documents": 2})

    response = await body_of(frames())
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    expected = (
        'event: token\ndata: {"text":"Den\\nver «é»","n":1}\n\n'
        'event: ready\ndata: {"documents":2}\n\n'
    )
    assert response.content == expected.encode()


async def test_an_idle_stream_gets_keepalive_comments(monkeypatch):
    monkeypatch.setattr(sse, "KEEPALIVE_SECONDS", 0.05)

    async def frames() -> AsyncIterator[ServerSentEvent]:
        await asyncio.sleep(0.3)
        yield sse.frame("done", {})

    body = (await body_of(frames())).content
    assert body.startswith(b": keepalive\n\n")
    assert body.endswith(b"event: done\ndata: {}\n\n")
    # At least one more while idle; how many more depends on how busy the machine is.
    assert body.count(b": keepalive\n\n") >= 2
