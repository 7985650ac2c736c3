"""TeiEmbedder against a real HTTP server on loopback that speaks TEI's /embed and /info.

The fake TEI embeds with the packaged ONNX model, so the vectors can be checked against it, and
can be told to fail the ways a real one does (503, overload, batch too large, too slow, gone).
"""

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from ragbus.adapters.embedding import create_backend
from ragbus.adapters.embedding.model_files import DIMENSIONS, MODEL_NAME
from ragbus.adapters.embedding.onnx_backend import OnnxEmbedder
from ragbus.adapters.embedding.tei_backend import TeiEmbedder
from ragbus.ports import EmbeddingBackend, EmbeddingUnavailable

TEXTS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "kubectl rollout status deployment/nginx",
    "A Service is an abstraction that defines a logical set of Pods. " * 40,
    "",
    "Namespaces partition cluster resources between multiple users.",
]


@dataclass
class FakeTei:
    """What the fake server does; tests flip these between requests."""

    model: OnnxEmbedder
    status: int = 200
    info: bool = True
    max_client_batch_size: int = 4
    scale: float = 1.0
    delay_s: float = 0.0
    requests: list[list[str]] = field(default_factory=list)


def _handler(fake: FakeTei) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        def _reply(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/info" and fake.info:
                self._reply(
                    200,
                    {
                        "model_id": MODEL_NAME,
                        "model_type": {"embedding": {"pooling": "mean"}},
                        "max_input_length": 256,
                        "max_client_batch_size": fake.max_client_batch_size,
                        "version": "fake",
                    },
                )
            else:
                self._reply(404, {"error": "not found", "error_type": "not_found"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if fake.delay_s:
                time.sleep(fake.delay_s)
            if self.path != "/embed":
                self._reply(404, {"error": "not found", "error_type": "not_found"})
                return
            if fake.status != 200:
                self._reply(fake.status, {"error": "model is loading", "error_type": "overloaded"})
                return
            inputs = body["inputs"]
            inputs = [inputs] if isinstance(inputs, str) else inputs
            if not inputs:
                self._reply(422, {"error": "`inputs` cannot be empty", "error_type": "empty"})
                return
            if len(inputs) > fake.max_client_batch_size:
                self._reply(
                    413,
                    {
                        "error": f"batch size {len(inputs)} > maximum allowed batch size "
                        f"{fake.max_client_batch_size}",
                        "error_type": "validation",
                    },
                )
                return
            fake.requests.append(inputs)
            vectors = fake.model.embed(inputs) * fake.scale
            self._reply(200, vectors.tolist())

    return Handler


@pytest.fixture(scope="module")
def model() -> Iterator[OnnxEmbedder]:
    backend = OnnxEmbedder(intra_op_num_threads=2)
    yield backend
    backend.close()


@pytest.fixture
def fake(model: OnnxEmbedder) -> FakeTei:
    return FakeTei(model=model)


@pytest.fixture
def url(fake: FakeTei) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.integration
def test_matches_local_model_in_order(url: str, fake: FakeTei, model: OnnxEmbedder) -> None:
    with closing(TeiEmbedder(url, timeout_s=10, batch_size=3)) as tei:
        backend: EmbeddingBackend = tei  # checked by mypy: the class meets the protocol
        assert backend.name == MODEL_NAME
        vectors = backend.embed(TEXTS)
        assert vectors.shape == (len(TEXTS), DIMENSIONS)
        assert vectors.dtype == np.float32
        np.testing.assert_allclose(np.sum(vectors * model.embed(TEXTS), axis=1), 1.0, atol=1e-5)
        assert [len(batch) for batch in fake.requests] == [3, 3, 1]


@pytest.mark.integration
def test_batch_size_clamped_to_server_limit(url: str, fake: FakeTei) -> None:
    with closing(TeiEmbedder(url, batch_size=32)) as tei:
        assert tei.batch_size == fake.max_client_batch_size
        assert tei.embed(TEXTS).shape == (len(TEXTS), DIMENSIONS)
        assert [len(batch) for batch in fake.requests] == [4, 3]


@pytest.mark.integration
def test_dimensions_probed_once_when_info_lacks_them(url: str, fake: FakeTei) -> None:
    with closing(TeiEmbedder(url)) as tei:
        assert tei.dimensions == DIMENSIONS
        assert tei.dimensions == DIMENSIONS
        assert len(fake.requests) == 1
        assert tei.embed([]).shape == (0, DIMENSIONS)


@pytest.mark.integration
def test_dimensions_from_first_reply_without_info(url: str, fake: FakeTei) -> None:
    fake.info = False
    with closing(TeiEmbedder(url, batch_size=2)) as tei:
        assert tei.name == url.rstrip("/")
        tei.embed(TEXTS[:2])
        assert tei.dimensions == DIMENSIONS
        assert len(fake.requests) == 1


@pytest.mark.integration
def test_renormalises_server_output(url: str, fake: FakeTei) -> None:
    fake.scale = 3.0
    with closing(TeiEmbedder(url)) as tei:
        norms = np.linalg.norm(tei.embed(TEXTS), axis=1)
        np.testing.assert_allclose(norms, 1.0, atol=1e-5)


@pytest.mark.integration
@pytest.mark.parametrize("status", [503, 500, 429])
def test_server_errors_are_transient(url: str, fake: FakeTei, status: int) -> None:
    fake.status = status
    with (
        closing(TeiEmbedder(url)) as tei,
        pytest.raises(EmbeddingUnavailable, match=str(status)),
    ):
        tei.embed(TEXTS[:1])


@pytest.mark.unit
def test_closed_server_is_transient(closed_url: str) -> None:
    # Constructing must not need the server.
    with (
        closing(TeiEmbedder(closed_url, timeout_s=2)) as tei,
        pytest.raises(EmbeddingUnavailable, match="unreachable"),
    ):
        tei.embed(TEXTS[:1])


@pytest.mark.integration
def test_timeout_is_transient(url: str, fake: FakeTei) -> None:
    fake.delay_s = 1.0
    with (
        closing(TeiEmbedder(url, timeout_s=0.2)) as tei,
        pytest.raises(EmbeddingUnavailable, match="unreachable"),
    ):
        tei.embed(TEXTS[:1])


@pytest.mark.integration
def test_rejected_request_is_permanent(url: str, fake: FakeTei) -> None:
    fake.info = False  # the client cannot learn the limit, so its batch is too large
    with closing(TeiEmbedder(url, batch_size=32)) as tei:
        with pytest.raises(ValueError, match="maximum allowed batch size 4") as raised:
            tei.embed(TEXTS)
        assert not isinstance(raised.value, EmbeddingUnavailable)


@pytest.mark.integration
def test_create_backend_with_url_is_tei(url: str) -> None:
    with closing(create_backend(url, threads=1, batch_size=2)) as backend:
        assert isinstance(backend, TeiEmbedder)
        assert backend.batch_size == 2
        assert backend.embed(TEXTS[:3]).shape == (3, DIMENSIONS)
