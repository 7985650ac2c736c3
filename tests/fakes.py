"""In-memory fakes of the ports (`ragbus.ports`) for unit tests: no broker, no model file, no
Qdrant, no network. Each keeps the semantics its protocol documents, and records what it was
asked so a test can check the calls; tests/test_fakes.py holds them to those semantics, and
FakeStore runs the store contract of tests/ragbus/adapters/test_store.py beside QdrantStore."""

import hashlib
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ragbus.ports import (
    Generation,
    GenerationState,
    Hit,
    IndexInfo,
    LlmError,
    Message,
    Point,
    RerankError,
    SearchRequest,
    UnknownGeneration,
    Vectors,
    mixed_models,
    oldest_kept_first,
)
from ragbus.sparse import SparseVector

# The store.

RRF_K = 2  # Qdrant's reciprocal rank fusion: 1 / (k + rank), rank counted from 0


@dataclass
class _Document:
    """What QdrantStore's registry keeps of a document: tenant, live version, and the
    upload time and point ids of every version that may have points."""

    tenant_id: str
    live: str | None = None
    versions: dict[str, tuple[str, set[str]]] = field(default_factory=dict)

    def ids(self, version: str | None = None) -> set[str]:
        chosen = [version] if version is not None else list(self.versions)
        return {i for v in chosen if v in self.versions for i in self.versions[v][1]}


class _Collection:
    """One generation's points in memory, with `QdrantStore`'s semantics: points are written
    not live (live when their version is live already: a replayed batch), searches read live
    points only, `promote` makes a version live and drops the document's other versions,
    unless a version uploaded later is live already (then this one is dropped and None
    returned)."""

    def __init__(self, generation: Generation) -> None:
        self.record = generation
        self.points: dict[str, tuple[Point, bool]] = {}
        """Point id → (point, live)."""
        self.documents: dict[str, _Document] = {}

    def ensure(self, dimensions: int, model: str | None) -> None:
        record = self.record
        if record.dimensions is None:
            self.record = replace(record, dimensions=dimensions, model=model)
        elif record.dimensions != dimensions:
            raise ValueError(
                f"collection {record.collection} holds {record.dimensions}-dim vectors, "
                f"model gives {dimensions}"
            )
        elif reason := mixed_models(record.collection, record.model, model):
            raise ValueError(reason)

    def upsert(self, points: Sequence[Point]) -> None:
        dimensions = self.record.dimensions
        if dimensions is None:
            raise ValueError(f"no collection {self.record.collection}: call ensure_collection")
        for point in points:
            if len(point.vector) != dimensions:
                raise ValueError(f"point {point.id} has {len(point.vector)} dimensions")
        for point in points:
            payload = point.payload
            document = self.documents.setdefault(
                payload["document_id"], _Document(payload["tenant_id"])
            )
            uploaded_at = str(payload.get("uploaded_at", ""))
            _, ids = document.versions.setdefault(payload["version"], (uploaded_at, set()))
            ids.add(point.id)
            self.points[point.id] = (point, document.live == payload["version"])

    def count(self, document_id: str, version: str | None = None) -> int:
        document = self.documents.get(document_id)
        return len(document.ids(version) & self.points.keys()) if document else 0

    def promote(self, document_id: str, version: str) -> int | None:
        document = self.documents.get(document_id)
        if document is None or version not in document.versions:
            return 0
        served = document.live
        if (
            served not in (None, version)
            and served in document.versions
            and document.versions[served][0] > document.versions[version][0]
        ):
            self._drop(document.ids(version))
            del document.versions[version]
            return None
        stale = document.ids() - document.ids(version)
        dropped = self._drop(stale)
        for point_id in document.ids(version) & self.points.keys():
            self.points[point_id] = (self.points[point_id][0], True)
        document.live = version
        document.versions = {version: document.versions[version]}
        return dropped

    def delete_document(self, document_id: str, tenant_id: str) -> int:
        document = self.documents.get(document_id)
        if document is None or document.tenant_id != tenant_id:
            return 0
        del self.documents[document_id]
        return self._drop(document.ids())

    def _drop(self, ids: set[str]) -> int:
        """Remove the stored points among `ids`; how many there were."""
        stored = ids & self.points.keys()
        for point_id in stored:
            del self.points[point_id]
        return len(stored)

    def search(self, request: SearchRequest) -> list[Hit]:
        """Dense: cosine; sparse: dot product over shared terms (no IDF), points sharing none
        left out; both: reciprocal rank fusion of the two whole rankings. The tenant and
        `filters` (exact metadata values) apply to every ranking; only live points are read."""
        candidates = [
            point
            for point, live in self.points.values()
            if live
            and point.payload.get("tenant_id") == request.tenant_id
            and all(
                point.payload.get("metadata", {}).get(key) == value
                for key, value in request.filters.items()
            )
        ]
        rankings: list[list[tuple[float, Point]]] = []
        if request.dense is not None:
            scored = [(_cosine(request.dense, p.vector), p) for p in candidates]
            rankings.append(sorted(scored, key=lambda pair: -pair[0]))
        if request.sparse:
            scored = [(_dot(request.sparse, p.sparse), p) for p in candidates]
            rankings.append(sorted([s for s in scored if s[0] > 0], key=lambda pair: -pair[0]))
        if not rankings:
            return []
        if len(rankings) == 1:
            ranked = rankings[0]
        else:
            fused: dict[str, tuple[float, Point]] = {}
            for ranking in rankings:
                for rank, (_, point) in enumerate(ranking):
                    score = fused.get(point.id, (0.0, point))[0] + 1 / (RRF_K + rank)
                    fused[point.id] = (score, point)
            ranked = sorted(fused.values(), key=lambda pair: -pair[0])
        return [Hit(p.id, score, dict(p.payload)) for score, p in ranked[: request.limit]]


class FakeStore:
    """`VectorStore` in memory: generations of `_Collection`s, the serving one named by a
    number swapped in one step. `points`, `documents`, `dimensions` and `model` are the serving
    generation's."""

    def __init__(self, alias: str = "ragbus") -> None:
        self.alias = alias
        self.collections: dict[int, _Collection] = {}
        self.serving: int | None = None
        self.next = 1
        self.closed = False

    def _of(self, generation: int | None) -> _Collection | None:
        first = generation == 1 and self.serving is None  # created serving by its first vectors
        number = self.serving if generation is None or first else generation
        if number is None:
            return None
        if number not in self.collections:
            raise UnknownGeneration(f"index {self.alias!r} has no generation {number}")
        return self.collections[number]

    def _new(self, state: GenerationState, **planned: Any) -> _Collection:
        number, self.next = self.next, self.next + 1
        record = Generation(number, f"{self.alias}_g{number}", state, uuid.uuid4().hex, **planned)
        self.collections[number] = _Collection(record)
        return self.collections[number]

    @property
    def _serving(self) -> _Collection | None:
        return self._of(None)

    @property
    def points(self) -> dict[str, tuple[Point, bool]]:
        return self._serving.points if self._serving else {}

    @property
    def documents(self) -> dict[str, _Document]:
        return self._serving.documents if self._serving else {}

    @property
    def dimensions(self) -> int | None:
        return self._serving.record.dimensions if self._serving else None

    @property
    def model(self) -> str | None:
        return self._serving.record.model if self._serving else None

    def ensure_collection(
        self, dimensions: int, model: str | None = None, generation: int | None = None
    ) -> str:
        collection = self._of(generation)
        if collection is None:
            collection = self._new("serving")
            self.serving = collection.record.number
        collection.ensure(dimensions, model)
        return collection.record.collection

    def upsert(self, points: Sequence[Point], generation: int | None = None) -> None:
        collection = self._of(generation)
        if collection is None:
            raise ValueError(f"no collection behind {self.alias!r}: call ensure_collection")
        collection.upsert(points)

    def count(
        self, document_id: str, version: str | None = None, generation: int | None = None
    ) -> int:
        collection = self._of(generation)
        return collection.count(document_id, version) if collection else 0

    def promote(self, document_id: str, version: str, generation: int | None = None) -> int | None:
        collection = self._of(generation)
        return collection.promote(document_id, version) if collection else 0

    def delete_document(
        self, document_id: str, tenant_id: str, generation: int | None = None
    ) -> int:
        collection = self._of(generation)
        return collection.delete_document(document_id, tenant_id) if collection else 0

    def search(self, request: SearchRequest, generation: int | None = None) -> list[Hit]:
        collection = self._of(generation)
        return collection.search(request) if collection else []

    def generation(self) -> int:
        return self.serving or 0

    def info(self, tenant_id: str | None = None, generation: int | None = None) -> IndexInfo:
        """Points (live or not) and documents of a generation, or of `tenant_id`'s."""
        collection = self._of(generation)
        chosen = [
            point
            for point, _ in (collection.points.values() if collection else [])
            if tenant_id is None or point.payload.get("tenant_id") == tenant_id
        ]
        name = collection.record.collection if collection else ""
        return IndexInfo.of(
            self.alias, name, len(chosen), len({p.payload["document_id"] for p in chosen})
        )

    def generations(self) -> list[Generation]:
        return [self.collections[number].record for number in sorted(self.collections)]

    def plan(
        self, embed_model: str | None, chunk_tokens: int | None, overlap: int | None
    ) -> Generation:
        if building := [g for g in self.generations() if g.state == "building"]:
            raise ValueError(f"generation {building[0].number} is being built already")
        return self._new(
            "building", embed_model=embed_model, chunk_tokens=chunk_tokens, overlap=overlap
        ).record

    def document_ids(self, generation: int) -> set[str]:
        collection = self._of(generation)
        assert collection is not None
        return {point.payload["document_id"] for point, live in collection.points.values() if live}

    def sample(self, generation: int | None, documents: int) -> list[Hit]:
        collection = self._of(generation)
        first: dict[str, Hit] = {}
        for point, live in collection.points.values() if collection else []:
            if live:
                hit = Hit(point.id, 1.0, dict(point.payload))
                first.setdefault(point.payload["document_id"], hit)
        return list(first.values())[:documents]

    def begin_build(self, generation: int) -> None:
        self._of(generation)

    def finish_build(self, generation: int) -> bool:
        collection = self._of(generation)
        assert collection is not None
        collection.record = replace(collection.record, indexed=True)
        return True

    def swap(self, generation: int, keep: int) -> list[int]:
        target = self._of(generation)
        assert target is not None
        if target.record.dimensions is None:
            raise ValueError(f"generation {generation} holds nothing yet")
        if self._serving is not None and self.serving != generation:
            stopped = time.time_ns()
            self._serving.record = replace(self._serving.record, state="kept", kept_since=stopped)
        target.record = replace(target.record, state="serving")
        self.serving = generation
        kept = [g.number for g in oldest_kept_first(self.generations())]
        dropped = kept[: max(0, len(kept) - keep)]
        for number in dropped:
            del self.collections[number]
        return dropped

    def drop(self, generation: int) -> None:
        if generation == self.serving:
            raise ValueError(f"generation {generation} serves: swap to another first")
        self._of(generation)
        del self.collections[generation]

    def close(self) -> None:
        self.closed = True


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    norms = math.hypot(*a) * math.hypot(*b)
    return sum(x * y for x, y in zip(a, b, strict=True)) / norms if norms else 0.0


def _dot(a: SparseVector, b: SparseVector) -> float:
    weights = dict(zip(b.indices, b.values, strict=True))
    pairs = zip(a.indices, a.values, strict=True)
    return sum(value * weights.get(index, 0.0) for index, value in pairs)


# Embedding.


class FakeEmbedder:
    """`EmbeddingBackend` giving each text a deterministic unit vector drawn from a hash of it
    (the same in every process); equal texts get equal vectors, others nearly orthogonal ones.
    `failure`, when set, is raised by `embed` (e.g. `EmbeddingUnavailable`)."""

    def __init__(self, dimensions: int = 8, name: str = "fake-embedder") -> None:
        self._dimensions = dimensions
        self._name = name
        self.calls: list[list[str]] = []
        self.failure: Exception | None = None
        self.closed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def embed(self, texts: Sequence[str]) -> Vectors:
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single str")
        if self.closed:
            raise RuntimeError("FakeEmbedder is closed")
        if self.failure is not None:
            raise self.failure
        self.calls.append(list(texts))
        out = np.empty((len(texts), self._dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            vector = np.random.default_rng(seed).standard_normal(self._dimensions)
            out[row] = vector / np.linalg.norm(vector)
        return out

    def close(self) -> None:
        self.closed = True


# Generation.


@dataclass(frozen=True)
class ChatRequest:
    messages: list[Message]
    max_tokens: int
    temperature: float


class FakeChatModel:
    """`ChatModel` streaming scripted answers, one per call (the last repeats); an answer given
    as a str is streamed word by word, a sequence delta by delta. With `error`, each stream
    raises it after `fail_after` deltas. Every request is kept in `requests`."""

    def __init__(
        self,
        *answers: str | Sequence[str],
        name: str = "fake-chat",
        error: LlmError | None = None,
        fail_after: int = 0,
    ) -> None:
        self.answers = list(answers) or ["The answer [1]."]
        self._name = name
        self.error = error
        self.fail_after = fail_after
        self.requests: list[ChatRequest] = []
        self.closed = False

    @property
    def name(self) -> str:
        return self._name

    async def stream(
        self, messages: list[Message], *, max_tokens: int, temperature: float = 0.0
    ) -> AsyncIterator[str]:
        self.requests.append(ChatRequest(messages, max_tokens, temperature))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        deltas = re.findall(r"\s*\S+", answer) if isinstance(answer, str) else list(answer)
        for n, delta in enumerate(deltas):
            if self.error is not None and n == self.fail_after:
                raise self.error
            yield delta
        if self.error is not None:
            raise self.error

    async def close(self) -> None:
        self.closed = True


# Reranking.


def shared_words(query: str, text: str) -> float:
    """How many distinct casefolded words `text` shares with `query`."""
    words = set(re.findall(r"\w+", query.casefold()))
    return float(len(words & set(re.findall(r"\w+", text.casefold()))))


class FakeReranker:
    """`Reranker` scoring each text with `score(query, text)` (by default the words it shares
    with the query). With `error`, `scores` raises it. Every call is kept in `calls`."""

    def __init__(
        self,
        score: Callable[[str, str], float] = shared_words,
        error: RerankError | None = None,
    ) -> None:
        self.score = score
        self.error = error
        self.calls: list[tuple[str, list[str]]] = []
        self.closed = False

    async def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        self.calls.append((query, list(texts)))
        if self.error is not None:
            raise self.error
        return [self.score(query, text) for text in texts]

    async def close(self) -> None:
        self.closed = True


# Time.


class FakeClock:
    """A monotonic clock that moves only when a test advances `now` (seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
