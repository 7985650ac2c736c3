"""Embedding through a Text Embeddings Inference (TEI) server: the production, GPU path.

This speaks TEI's own API with httpx (`POST {url}/embed`, `GET {url}/info`) rather than through
`huggingface_hub.InferenceClient`: the installed client (2.x) posts to the bare URL, attaches the
locally saved Hugging Face token to every request (it would leak to any TEI host), and goes
through a process-wide session of another HTTP library, which makes the transient/permanent error
split below depend on its internals. One pooled `httpx.Client` keeps that split explicit.
"""

from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from ragbus.adapters.embedding.backend import l2_normalise
from ragbus.ports import EmbeddingUnavailable, Vectors

# TEI answers 429 when its queue is full and 424 when its model backend failed; both pass.
_TRANSIENT_4XX = frozenset({408, 424, 429})
_PROBE = "dimension probe"


class TeiEmbedder:
    """An `EmbeddingBackend` calling a TEI server; vectors come back normalised and in order.

    Transient failures (connection refused, timeout, 5xx, 408/424/429) raise
    EmbeddingUnavailable so the caller retries later; a rejected request (any other 4xx) raises
    ValueError with the server's message, since sending it again cannot succeed.

    The constructor never fails because the server is down: `/info` (model name, largest batch
    the server accepts) is read when reachable, and the dimensions come from the first reply.
    """

    def __init__(
        self,
        url: str,
        timeout_s: float = 30.0,
        batch_size: int = 32,
        client: httpx.Client | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.url = url.rstrip("/")
        self.batch_size = batch_size
        self._client = client or httpx.Client(timeout=timeout_s)
        self._name = self.url
        self._dimensions = 0
        self._read_info()

    @property
    def name(self) -> str:
        """TEI's `model_id` when /info answered, else the server URL."""
        return self._name

    @property
    def dimensions(self) -> int:
        """Vector length; TEI's /info does not carry it, so one probe text is sent if needed."""
        if not self._dimensions:
            self._post([_PROBE])
        return self._dimensions

    def _read_info(self) -> None:
        """Best effort: a missing or odd /info leaves the URL as name and batch_size as given."""
        try:
            response = self._client.get(f"{self.url}/info")
            response.raise_for_status()
            info: Any = response.json()
        except (httpx.HTTPError, ValueError):
            return
        if not isinstance(info, dict):
            return
        model_id = info.get("model_id")
        if isinstance(model_id, str) and model_id:
            self._name = model_id
        limit = info.get("max_client_batch_size")
        if isinstance(limit, int) and limit > 0:
            self.batch_size = min(self.batch_size, limit)
        for key in ("dimensions", "embedding_dimension", "hidden_size"):
            value = info.get(key)
            if isinstance(value, int) and value > 0:
                self._dimensions = value
                break

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed `texts` in order, `batch_size` per request: float32 [n, dims], unit rows."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single str")
        if not texts:
            return np.empty((0, self.dimensions), dtype=np.float32)
        parts = [
            self._post(list(texts[start : start + self.batch_size]))
            for start in range(0, len(texts), self.batch_size)
        ]
        # TEI normalises already; doing it again costs nothing and guards against a server
        # started without normalisation or a proxy that rounds floats.
        return l2_normalise(np.concatenate(parts))

    def _post(self, batch: list[str]) -> Vectors:
        """One /embed request, with TEI's failures sorted into retry-later and give-up."""
        payload = {"inputs": batch, "normalize": True, "truncate": True}
        try:
            response = self._client.post(f"{self.url}/embed", json=payload)
        except httpx.TransportError as error:  # connect, read/write, timeouts, protocol
            raise EmbeddingUnavailable(f"TEI at {self.url} unreachable: {error!r}") from error
        status = response.status_code
        if status >= 500 or status in _TRANSIENT_4XX:
            raise EmbeddingUnavailable(f"TEI at {self.url} answered {status}: {_message(response)}")
        if status >= 400:
            raise ValueError(
                f"TEI at {self.url} rejected the request ({status}): {_message(response)}"
            )
        try:
            vectors = np.asarray(response.json(), dtype=np.float32)
        except ValueError as error:
            raise EmbeddingUnavailable(f"TEI at {self.url} sent an unreadable body") from error
        if vectors.ndim != 2 or vectors.shape[0] != len(batch) or vectors.shape[1] == 0:
            raise EmbeddingUnavailable(
                f"TEI at {self.url} returned shape {vectors.shape} for {len(batch)} inputs"
            )
        if not self._dimensions:
            self._dimensions = int(vectors.shape[1])
        elif vectors.shape[1] != self._dimensions:
            raise ValueError(
                f"TEI at {self.url} returned {vectors.shape[1]} dimensions, "
                f"expected {self._dimensions} (was the model behind it changed?)"
            )
        return vectors

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()


def _message(response: httpx.Response) -> str:
    """TEI's error text (`{"error": ..., "error_type": ...}`), or the start of the raw body."""
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return response.text[:500]
