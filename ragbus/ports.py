"""The ports: what services need from the world outside them, as plain types and `Protocol`s.

Services and their pure transforms import these; the real implementations live in
`ragbus.adapters`, and tests pass fakes. Nothing here does I/O.
"""

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypedDict

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


GenerationState = Literal["building", "serving", "kept"]


@dataclass(frozen=True)
class Generation:
    """One complete index, built with one embedding model and one chunking, as the store
    records it. `model` and `dimensions` are the vectors' (known once the first are stored);
    `embed_model`, `chunk_tokens` and `overlap` are what it was planned with (None: the stages'
    configured ones)."""

    number: int
    collection: str
    state: GenerationState
    plan_id: str
    dimensions: int | None = None
    model: str | None = None
    embed_model: str | None = None
    chunk_tokens: int | None = None
    overlap: int | None = None
    indexed: bool = False
    """Its HNSW graph is built (searches before that are exact)."""
    kept_since: int = 0
    """When it stopped serving (ns since the epoch): the newest kept one is the rollback's."""


class UnknownGeneration(ValueError):
    """No such generation: never planned, or dropped since (events for it are moot)."""


class StoreUnavailable(ConnectionError):
    """The store answered that it cannot serve now (a server's 5xx or 429): wait and retry, as
    for a lost connection."""


class StoreRefused(ValueError):
    """The store refused the request (a server's 4xx other than 429): a retry changes nothing."""


class GenerationBusy(RuntimeError):
    """The generation's storage is busy building its HNSW graph: retry shortly."""


class VectorStore(Protocol):
    """Generations of one index under a serving name (`alias`). Every per-document call takes
    the generation it works on; None means the serving one."""

    alias: str

    def ensure_collection(
        self, dimensions: int, model: str | None = None, generation: int | None = None
    ) -> str:
        """The generation's collection (the serving one, created as generation 1 on first
        use), recording the `dimensions` and `model` of the first vectors it takes; raises
        ValueError for vectors it cannot hold (an index never mixes models), and
        `UnknownGeneration` for a generation it does not have."""
        ...

    def upsert(self, points: Sequence[Point], generation: int | None = None) -> None: ...

    def count(
        self, document_id: str, version: str | None = None, generation: int | None = None
    ) -> int: ...

    def promote(
        self, document_id: str, version: str, generation: int | None = None
    ) -> int | None: ...

    def delete_document(
        self, document_id: str, tenant_id: str, generation: int | None = None
    ) -> int: ...

    def search(self, request: SearchRequest, generation: int | None = None) -> list[Hit]: ...

    def generation(self) -> int: ...

    def info(self, tenant_id: str | None = None, generation: int | None = None) -> IndexInfo: ...

    def generations(self) -> list[Generation]:
        """Every generation the store keeps, oldest first."""
        ...

    def plan(
        self, embed_model: str | None, chunk_tokens: int | None, overlap: int | None
    ) -> Generation:
        """A new generation to build beside the serving one (refused while one is building)."""
        ...

    def document_ids(self, generation: int) -> set[str]:
        """The ids of the documents live in a generation."""
        ...

    def sample(self, generation: int | None, documents: int) -> list[Hit]:
        """A live point of each of up to `documents` documents of a generation (canaries)."""
        ...

    def begin_build(self, generation: int) -> None:
        """Start building the generation's HNSW graph where it cannot stall this process (its
        calls raise `GenerationBusy` meanwhile); a store that builds its graphs itself does
        nothing."""
        ...

    def finish_build(self, generation: int) -> bool:
        """Whether the build has ended (False: ask again later); once it has, the generation is
        recorded as indexed. A failed build raises here."""
        ...

    def swap(self, generation: int, keep: int) -> list[int]:
        """Serve `generation` from now on, in one step; the one serving before is kept, and
        the kept ones beyond the newest `keep` are dropped (their numbers returned)."""
        ...

    def drop(self, generation: int) -> None:
        """Remove a generation that does not serve, storage and all."""
        ...

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


def previous_generation(generations: Sequence[Generation]) -> Generation | None:
    """The generation a rollback returns to: the one that served last before this one."""
    kept = oldest_kept_first(generations)
    return kept[-1] if kept else None


def oldest_kept_first(generations: Sequence[Generation]) -> list[Generation]:
    """The kept generations, the one that stopped serving longest ago first."""
    return sorted((g for g in generations if g.state == "kept"), key=lambda g: g.kept_since)


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
