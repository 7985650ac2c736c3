"""The ports: what services need from the world outside them, as plain types and `Protocol`s.

Services and their pure transforms import these; the real implementations live in
`ragbus.adapters`, and tests pass fakes. Nothing here does I/O.
"""

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict

import numpy as np
import numpy.typing as npt

from ragbus.sparse import SparseVector

Payload = dict[str, Any]

# The vector store.


@dataclass(frozen=True)
class Point:
    id: str
    vector: Sequence[float]
    sparse: SparseVector
    payload: Payload


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    payload: Payload


@dataclass(frozen=True)
class SearchRequest:
    """What to look for: a dense vector, a sparse one, or both (hybrid, fused by RRF)."""

    tenant_id: str
    limit: int
    dense: Sequence[float] | None = None
    sparse: SparseVector | None = None
    filters: Payload = field(default_factory=dict)


@dataclass(frozen=True)
class IndexInfo:
    alias: str
    collection: str
    generation: int
    points: int
    documents: int

    @classmethod
    def of(cls, alias: str, collection: str, points: int, documents: int) -> "IndexInfo":
        """What a store serves under `alias`: `collection`, whose name gives the generation."""
        return cls(alias, collection, generation_of(collection), points, documents)


class VectorStore(Protocol):
    alias: str

    def ensure_collection(self, dimensions: int, model: str | None = None) -> str:
        """The serving collection, created on first use for vectors of `dimensions` from
        `model`; raises ValueError for vectors it cannot hold (an index never mixes models)."""
        ...

    def upsert(self, points: Sequence[Point]) -> None: ...

    def count(self, document_id: str, version: str | None = None) -> int: ...

    def promote(self, document_id: str, version: str) -> int | None: ...

    def delete_document(self, document_id: str, tenant_id: str) -> int: ...

    def search(self, request: SearchRequest) -> list[Hit]: ...

    def generation(self) -> int: ...

    def info(self, tenant_id: str | None = None) -> IndexInfo: ...

    def close(self) -> None: ...


def mixed_models(collection: str, held: str | None, given: str | None) -> str | None:
    """Why vectors of `given` cannot join a collection of `held` vectors (None: they can; a
    collection or event that names no model is not checked)."""
    if held is None or given is None or held == given:
        return None
    return (
        f"collection {collection} holds vectors of model {held!r}, these are of {given!r}: "
        "an index never mixes embedding models"
    )


def generation_of(collection: str) -> int:
    """The generation number in a collection name `<alias>_g<N>` (0 when there is none)."""
    match = re.search(r"_g(\d+)$", collection)
    return int(match.group(1)) if match else 0


# Embedding.

Vectors = npt.NDArray[np.float32]
"""float32 array of shape [n, dimensions] whose rows have unit L2 norm."""


class EmbeddingUnavailable(RuntimeError):
    """The backend is unreachable, overloaded (5xx) or timed out: retry later with backoff.

    Anything else a backend raises (ValueError for a rejected request, ModelFileError for a bad
    model file) is permanent: retrying the same input will fail the same way.
    """


class EmbeddingBackend(Protocol):
    """Turns texts into unit-length vectors; cosine similarity is then a dot product.

    Deliberately not runtime-checkable: on Python 3.11 isinstance() would read `dimensions`,
    which for a remote backend may mean a network call.
    """

    @property
    def name(self) -> str:
        """Model name, recorded with every vector so an index never mixes models."""
        ...

    @property
    def dimensions(self) -> int:
        """Length of every vector (a remote backend may have to ask its server once)."""
        ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed `texts` in order: float32 [len(texts), dimensions], L2-normalised rows."""
        ...

    def close(self) -> None:
        """Release sessions, threads and connections; the backend is unusable afterwards."""
        ...


# Generation.


class Message(TypedDict):
    role: str
    content: str


class LlmError(RuntimeError):
    """The model could not answer: unreachable, timed out, or refused the request."""


class ChatModel(Protocol):
    @property
    def name(self) -> str: ...

    def stream(
        self, messages: list[Message], *, max_tokens: int, temperature: float = 0.0
    ) -> AsyncIterator[str]:
        """The answer's text deltas, in order."""
        ...

    async def close(self) -> None: ...


# Reranking.


class RerankError(RuntimeError):
    """The reranker could not score the passages."""


class Reranker(Protocol):
    async def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        """One relevance score per text, in the texts' order (higher is better)."""
        ...

    async def close(self) -> None: ...
