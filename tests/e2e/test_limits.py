"""Bounded requests: every POST route of every service, sent a 1 GiB chunked body, answers 413 as
soon as its limit is passed (a route that takes no body answers without reading it), and the
serving process grows by less than 50 MB meanwhile."""

import select
import socket
import threading
import time
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

pytestmark = pytest.mark.e2e

GIB = 1024**3
PIECE = 256 * 1024
GROWTH_LIMIT_MB = 50
BOUNDARY = "ragbus-limit-test"
JSON = "application/json"
# Each route with the start of a body it would read, then filler for ever.
ROUTES = {
    ("ingest", "/v1/documents", "files"): (
        f"multipart/form-data; boundary={BOUNDARY}",
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="big.txt"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode(),
    ),
    ("ingest", "/v1/documents", "text"): (JSON, b'{"documents": [{"text": "'),
    ("query", "/v1/query", ""): (JSON, b'{"question": "'),
    ("query", "/v1/query/stream", ""): (JSON, b'{"question": "'),
    ("query", "/v1/chat/completions", ""): (
        JSON,
        b'{"model": "ragbus", "messages": [{"content": "',
    ),
    ("indexer", "/v1/index/generations", ""): (JSON, b'{"chunk_tokens": 128, "note": "'),
    ("indexer", "/v1/index/generations/1/promote", ""): (JSON, b'{"note": "'),
    ("indexer", "/v1/index/rollback", ""): (JSON, b'{"note": "'),
}
# Routes that take no body: they answer (here 409, nothing to promote or roll back to) unread.
BODILESS = {"/v1/index/generations/1/promote", "/v1/index/rollback"}
PROCESS_OF = {"ingest": ("ingest",), "query": ("indexer", "query"), "indexer": ("indexer", "query")}


def post_endlessly(url: str, path: str, content_type: str, start: bytes) -> tuple[int, int]:
    """POST `start` then filler as a chunked body, up to 1 GiB, until the server answers; the
    status it answered and how many bytes were sent."""
    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port)) as connection:
        connection.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {where.netloc}\r\nContent-Type: {content_type}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        connection.setblocking(False)
        pending, sent, answer = b"%x\r\n%s\r\n" % (len(start), start), 0, b""
        filler = b"%x\r\n%s\r\n" % (PIECE, b"x" * PIECE)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            readable, writable, _ = select.select([connection], [connection], [], 1.0)
            if readable:
                answer = connection.recv(65536)
                break
            if writable and sent < GIB:
                try:
                    pending = pending[connection.send(pending) :]
                except (BrokenPipeError, ConnectionResetError):
                    break
                if not pending:
                    sent += PIECE
                    pending = filler
        assert answer, f"no answer from {path} after {sent} bytes"
        return int(answer.split(b" ", 2)[1]), sent


class PeakRss:
    """The highest RSS a process reaches while this runs, sampled every 10 ms."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.before = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.before) / 2**20


def test_every_post_route_is_covered(stack):
    posts = {
        (service, path)
        for service in ("ingest", "query", "indexer", "status", "chunker", "embedder")
        for path, methods in httpx.get(f"{stack.urls[service]}/openapi.json")
        .json()["paths"]
        .items()
        if "post" in methods
    }
    tested = {(service, path.replace("/1/", "/{generation}/")) for service, path, _ in ROUTES}
    assert posts == tested


@pytest.mark.parametrize(("service", "path", "kind"), list(ROUTES), ids=lambda part: part or "-")
def test_a_gibibyte_chunked_body_is_refused_as_it_streams_in_constant_memory(
    stack, service, path, kind
):
    content_type, start = ROUTES[(service, path, kind)]
    with PeakRss(stack.processes[PROCESS_OF[service]].pid) as rss:
        status, sent = post_endlessly(stack.urls[service], path, content_type, start)
    if path in BODILESS:
        assert status < 500, f"{path} answered {status} after {sent} bytes"
    else:
        assert status == 413, f"{path} answered {status} after {sent} bytes"
    # Refused near the limit that applies: a file's (50 MiB) for a file, never the whole GiB.
    assert sent < (60 * 2**20 if kind == "files" else GIB)
    assert rss.growth_mb < GROWTH_LIMIT_MB, f"{path}: +{rss.growth_mb:.0f} MB after {sent} bytes"
