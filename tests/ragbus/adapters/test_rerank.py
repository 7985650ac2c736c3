"""The TEI rerank client against a small real HTTP server speaking TEI's `/rerank`."""

import asyncio

import orjson
import pytest

from deploy.kafka.launcher import free_ports
from ragbus.adapters.rerank import TeiReranker
from ragbus.ports import RerankError

pytestmark = pytest.mark.unit


async def _serve(answer: bytes, status: str = "200 OK"):
    requests = []

    async def handler(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        requests.append(orjson.loads(await reader.readexactly(length)))
        writer.write(
            f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(answer)}\r\nconnection: close\r\n\r\n".encode()
            + answer
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", requests


async def test_scores_come_back_in_the_texts_order():
    # TEI answers sorted by score; the client puts them back in input order.
    server, url, requests = await _serve(
        b'[{"index": 1, "score": 0.9}, {"index": 0, "score": 0.2}]'
    )
    reranker = TeiReranker(url)
    assert await reranker.scores("what is etcd", ["pods", "etcd stores state"]) == [0.2, 0.9]
    assert requests == [
        {"query": "what is etcd", "texts": ["pods", "etcd stores state"], "truncate": True}
    ]
    await reranker.close()
    server.close()


@pytest.mark.parametrize(
    ("answer", "status"),
    [(b'{"error": "overloaded"}', "503 Service Unavailable"), (b'[{"index": 0}]', "200 OK")],
)
async def test_a_failing_or_malformed_answer_is_a_rerank_error(answer, status):
    server, url, _ = await _serve(answer, status)
    reranker = TeiReranker(url)
    with pytest.raises(RerankError):
        await reranker.scores("q", ["a", "b"])
    await reranker.close()
    server.close()


async def test_an_unreachable_reranker_is_a_rerank_error():
    (port,) = free_ports(1)
    reranker = TeiReranker(f"http://127.0.0.1:{port}", timeout_s=2)
    with pytest.raises(RerankError, match="failed"):
        await reranker.scores("q", ["a"])
    await reranker.close()
