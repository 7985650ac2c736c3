"""The OpenAI-compatible client against small real HTTP servers that misbehave on purpose."""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import orjson
import pytest

from deploy.kafka.launcher import free_ports
from ragbus.adapters.llm import OpenAiChat, complete
from ragbus.ports import LlmError

pytestmark = pytest.mark.unit

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
MESSAGES = [{"role": "user", "content": "hi"}]


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.close()


@dataclass
class Scripted:
    """A scripted server's URL, and the bodies of the requests it answered, in order."""

    url: str = ""
    bodies: list[bytes] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return len(self.bodies)


@asynccontextmanager
async def scripted(respond: Callable[[int, bytes], bytes]) -> AsyncIterator[Scripted]:
    """A server that answers the n-th request (counted from 1) with `respond(n, body)`, then
    closes the connection."""
    server = Scripted()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.bodies.append(await _read_request(reader))
        writer.write(respond(server.calls, server.bodies[-1]))
        await writer.drain()
        writer.close()

    async with serve(handler) as server.url:
        yield server


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return await reader.readexactly(length)


def _events(deltas: list[str]) -> bytes:
    return b"".join(
        b"data: " + orjson.dumps({"choices": [{"delta": {"content": d}}]}) + b"\n\n" for d in deltas
    )


def _stream_response(deltas: list[str]) -> bytes:
    return _ok(_events(deltas) + b"data: [DONE]\n\n")


def _ok(body: bytes, content_type: str = "text/event-stream") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
        + body
    )


BUSY = b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
CONTEXT_TOO_LONG = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 29\r\nconnection: close\r\n\r\n"
    b'{"error": "context too long"}'
)


async def test_deltas_arrive_in_order_and_the_model_name_is_sent():
    async with scripted(lambda call, body: _stream_response(["Par", "is", " [1]"])) as server:
        chat = OpenAiChat(server.url, "qwen")
        deltas = [d async for d in chat.stream(MESSAGES, max_tokens=8)]
        await chat.close()
    assert deltas == ["Par", "is", " [1]"]
    sent = orjson.loads(server.bodies[0])
    assert sent["model"] == "qwen" and sent["stream"] is True


async def test_overload_is_retried_before_the_first_token():
    async with scripted(
        lambda call, body: BUSY if call < 3 else _stream_response(["ok"])
    ) as server:
        chat = OpenAiChat(server.url, "m", retries=2, backoff_s=0.01)
        assert await complete(chat, MESSAGES, max_tokens=4) == "ok"
        await chat.close()
    assert server.calls == 3


async def test_an_unreachable_server_fails_with_a_reason():
    (port,) = free_ports(1)
    chat = OpenAiChat(f"http://127.0.0.1:{port}/v1", "m", retries=1, backoff_s=0.01)
    with pytest.raises(LlmError, match="unreachable"):
        await complete(chat, MESSAGES, max_tokens=4)
    await chat.close()


async def test_a_silent_server_times_out_instead_of_hanging():
    async def handler(reader, writer):
        await _read_request(reader)
        await asyncio.sleep(30)

    async with serve(handler) as url:
        chat = OpenAiChat(url, "m", delta_timeout_s=0.5, total_timeout_s=1.5, retries=5)
        started = time.monotonic()
        with pytest.raises(LlmError):
            await complete(chat, MESSAGES, max_tokens=4)
        assert time.monotonic() - started < 5
        await chat.close()


async def test_a_refused_request_is_not_retried():
    async with scripted(lambda call, body: CONTEXT_TOO_LONG) as server:
        chat = OpenAiChat(server.url, "m", retries=3, backoff_s=0.01)
        with pytest.raises(LlmError, match="context too long"):
            await complete(chat, MESSAGES, max_tokens=4)
        await chat.close()
    assert server.calls == 1


def _cut_stream(deltas: list[str]) -> bytes:
    """A 200 whose body promises more than it sends: the connection drops mid-stream."""
    events = _events(deltas)
    return _ok(events).replace(f"content-length: {len(events)}".encode(), b"content-length: 9999")


async def test_a_stream_cut_before_the_first_delta_is_retried():
    def respond(call: int, body: bytes) -> bytes:
        return _cut_stream([]) if call == 1 else _stream_response(["ok"])

    async with scripted(respond) as server:
        chat = OpenAiChat(server.url, "m", retries=1, backoff_s=0.01)
        assert await complete(chat, MESSAGES, max_tokens=4) == "ok"
        await chat.close()
    assert server.calls == 2


async def test_a_stream_cut_after_the_first_delta_is_final():
    async with scripted(lambda call, body: _cut_stream(["Par"])) as server:
        chat = OpenAiChat(server.url, "m", retries=3, backoff_s=0.01)
        received = []
        with pytest.raises(LlmError, match="unreachable"):
            async for delta in chat.stream(MESSAGES, max_tokens=4):
                received.append(delta)
        await chat.close()
    assert (received, server.calls) == (["Par"], 1)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (b'data: {"error": "the model crashed"}', "failed: the model crashed"),
        (b"data: <html>busy</html>", "sent an event that is not JSON"),
    ],
)
async def test_a_bad_event_fails_with_a_reason_and_is_not_retried(event, reason):
    async with scripted(lambda call, body: _ok(event + b"\n\n")) as server:
        chat = OpenAiChat(server.url, "m", retries=3, backoff_s=0.01)
        with pytest.raises(LlmError, match=reason):
            await complete(chat, MESSAGES, max_tokens=4)
        await chat.close()
    assert server.calls == 1


async def test_without_a_model_name_the_first_served_model_is_used():
    def respond(call: int, body: bytes) -> bytes:
        if body:
            return _stream_response(["ok"])
        # GET /models
        listing = {"object": "list", "data": [{"id": "qwen", "object": "model"}]}
        return _ok(orjson.dumps(listing), "application/json")

    async with scripted(respond) as server:
        chat = OpenAiChat(server.url, "")
        assert await complete(chat, MESSAGES, max_tokens=4) == "ok"
        await chat.close()
    listing, completion = server.bodies
    assert listing == b""  # GET /models
    assert (chat.name, orjson.loads(completion)["model"]) == ("qwen", "qwen")
