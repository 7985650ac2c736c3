"""The vector store adapter: Qdrant through qdrant-client, a server when `QDRANT_URL` is set,
embedded local storage otherwise (which one process at a time may open).

The serving name is an alias over a generation collection (`<alias>_g<N>`), so a rebuild can
write a new generation and swap the alias atomically. Each point holds a dense vector and a
BM25-style sparse vector (`ragbus.sparse`) scored with Qdrant's IDF modifier; hybrid search fuses
the two rankings with reciprocal rank fusion inside Qdrant's query API.

Document versions are swapped without a gap or a mix: a version's points are written with
`live: false`, searches read only live points, and `promote` makes the complete version live and
deletes the others in one batch of operations.

The indexer finds a document's points through a registry collection beside the points
(`<collection>_documents`, one payload-only record per document: its tenant, live version, and
each stored version's point ids), never through a filter over the whole collection: embedded
storage answers a filter by scanning every point (~20 µs each), which made indexing slow down
as the index grew. Point ids are registered before the points are written, so the registry
always covers every point.
"""

import asyncio
import functools
import json
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import UnexpectedResponse

from ragbus.adapters.point_schema import (
    DENSE,
    FUSION_DEPTH,
    FUSION_FLOOR,
    LIVE,
    SAMPLED_PER_DOCUMENT,
    SPARSE,
    newest_versions,
    one_per_document,
)
from ragbus.ports import (
    Generation,
    Hit,
    IndexInfo,
    Payload,
    Point,
    SearchRequest,
    StoreRefused,
    StoreUnavailable,
    UnknownGeneration,
    VectorStore,
    generation_of,
    mixed_models,
    oldest_kept_first,
)
from ragbus.sparse import SparseVector

T = TypeVar("T")

REGISTRY_SUFFIX = "_documents"
GENERATIONS_SUFFIX = "_generations"
_REGISTRY_IDS = uuid.UUID("8d3c1f2e-57a4-4b8e-9c61-0f2a7e5d4b13")


@dataclass
class Registered:
    """A document as the registry keeps it: its tenant, its live version, and the point ids
    and upload time of every version that may have points."""

    document_id: str
    tenant_id: str
    live: str | None = None
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def point_id(self) -> str:
        return _registry_id(self.document_id)

    def ids(self, version: str | None = None) -> list[str]:
        """The point ids of one version, or of every version."""
        chosen = [version] if version is not None else list(self.versions)
        return [i for v in chosen for i in self.versions.get(v, {}).get("ids", [])]

    def uploaded_at(self, version: str) -> str:
        return str(self.versions.get(version, {}).get("uploaded_at", ""))

    def payload(self) -> Payload:
        return {
            "document_id": self.document_id,
            "tenant_id": self.tenant_id,
            "live": self.live,
            "versions": self.versions,
        }


def _registry_id(document_id: str) -> str:
    return str(uuid.uuid5(_REGISTRY_IDS, document_id))


def _catalog_id(key: str) -> str:
    return str(uuid.uuid5(_REGISTRY_IDS, f"generation/{key}"))


def _match(key: str, value: Any) -> qm.FieldCondition:
    return qm.FieldCondition(key=key, match=qm.MatchValue(value=value))


# The server's words kept in an error: enough to tell the cause, never a whole echoed request.
REASON_CHARS = 300


class ServerAnswers:
    """qdrant-client, its calls' errors saying what the server's answer means: a 5xx or 429 is
    `StoreUnavailable` (waited for, like a lost connection), any other 4xx `StoreRefused` with
    the server's reason (qdrant-client raises both as one `UnexpectedResponse`)."""

    def __init__(self, client: QdrantClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attribute(*args, **kwargs)
            except UnexpectedResponse as exc:
                raise server_error(exc) from exc

        return call


def server_error(exc: UnexpectedResponse) -> StoreUnavailable | StoreRefused:
    code = exc.status_code or 0
    try:
        detail = str(json.loads(exc.content)["status"]["error"])
    except (ValueError, KeyError, TypeError):
        detail = exc.content.decode("utf-8", "replace")
    said = f"{code} {exc.reason_phrase}: {detail[:REASON_CHARS]}".rstrip(": ")
    if code >= 500 or code == 429:
        return StoreUnavailable(f"the Qdrant server cannot serve now ({said})")
    return StoreRefused(f"the Qdrant server refused the request ({said})")


class QdrantStore:
    """`VectorStore` on Qdrant: a collection per generation, the serving name an alias over
    one of them, and what each generation is built with in a payload-only collection beside
    them (`<alias>_generations`, one record per generation, plus the next number to give)."""

    def __init__(self, client: QdrantClient, alias: str) -> None:
        self.client = cast(QdrantClient, ServerAnswers(client))
        self.alias = alias
        self._checked: set[tuple[str, int, str | None]] = set()
        self._known: dict[int, dict[str, Any]] = {}

    @classmethod
    def connect(cls, url: str | None, path: Path, alias: str) -> "QdrantStore":
        if url:
            return cls(QdrantClient(url=url, timeout=30), alias)
        path.mkdir(parents=True, exist_ok=True)
        return cls(QdrantClient(path=str(path)), alias)

    def _collection(self) -> str | None:
        for alias in self.client.get_aliases().aliases:
            if alias.alias_name == self.alias:
                return alias.collection_name
        return None

    # The generations' records.

    @property
    def _catalog(self) -> str:
        return self.alias + GENERATIONS_SUFFIX

    def _record(self, generation: int) -> dict[str, Any]:
        """A generation's record, read again when not known here (another replica planned it)."""
        if generation not in self._known:
            self._known = self._records()
        if generation not in self._known:
            raise UnknownGeneration(
                f"index {self.alias!r} has no generation {generation} (dropped, or never planned)"
            )
        return self._known[generation]

    def _records(self) -> dict[int, dict[str, Any]]:
        """Every generation's record by number (the alias's collection recorded on first
        sight: a store written before generations were recorded)."""
        records: dict[int, dict[str, Any]] = {}
        if self.client.collection_exists(self._catalog):
            points, _ = self.client.scroll(self._catalog, limit=10_000, with_payload=True)
            for point in points:
                payload = point.payload or {}
                if "number" in payload:
                    records[int(payload["number"])] = payload
        serving = self._collection()
        if serving is not None and generation_of(serving) not in records:
            metadata = self.client.get_collection(serving).config.metadata or {}
            record: dict[str, Any] = {
                "number": generation_of(serving),
                "collection": serving,
                "plan_id": serving,
                "model": metadata.get("model"),
            }
            self._save(record)
            records[generation_of(serving)] = record
        return records

    def _save(self, record: dict[str, Any]) -> None:
        if not self.client.collection_exists(self._catalog):
            self.client.create_collection(self._catalog, vectors_config={})
        point = qm.PointStruct(id=_catalog_id(str(record["number"])), vector={}, payload=record)
        self.client.upsert(self._catalog, points=[point], wait=True)
        self._known[int(record["number"])] = record

    def _next_number(self, records: dict[int, dict[str, Any]]) -> int:
        """A number never given before: a chunker's consumer group is named after it."""
        found = (
            self.client.retrieve(self._catalog, ids=[_catalog_id("next")])
            if (self.client.collection_exists(self._catalog))
            else []
        )
        given = int((found[0].payload or {}).get("next", 1)) if found else 1
        number = max(given, 1 + max(records, default=0))
        self._save_next(number + 1)
        return number

    def _save_next(self, number: int) -> None:
        if not self.client.collection_exists(self._catalog):
            self.client.create_collection(self._catalog, vectors_config={})
        point = qm.PointStruct(id=_catalog_id("next"), vector={}, payload={"next": number})
        self.client.upsert(self._catalog, points=[point], wait=True)

    def _target(self, generation: int | None) -> str | None:
        """The collection a call works on: the alias (None before there is one), or a
        generation's own."""
        if generation is None or (generation == 1 and self._collection() is None):
            return self.alias if self._collection() is not None else None
        self._record(generation)
        name = f"{self.alias}_g{generation}"
        return name if self.client.collection_exists(name) else None

    def _existing(self, generation: int | None) -> str:
        target = self._target(generation)
        if target is None:
            raise ValueError(f"no collection behind {self.alias!r}: call ensure_collection")
        return target

    def ensure_collection(
        self, dimensions: int, model: str | None = None, generation: int | None = None
    ) -> str:
        """The generation's collection (the alias's, creating generation 1, its registry and
        the alias when there is none), created with the first vectors' model on first use."""
        if generation == 1 and self._collection() is None:
            generation = None  # the first generation is created serving by its first vectors
        if generation is None:
            existing = self._collection()
            if existing is None:
                records = self._records()
                number = self._next_number(records)
                collection = self._create(number, dimensions, model)
                self._save(
                    {
                        "number": number,
                        "collection": collection,
                        "plan_id": collection,
                        "model": model,
                        "dimensions": dimensions,
                    }
                )
                self._point_alias(collection)
                return collection
            name = existing
        else:
            record = self._record(generation)
            name = f"{self.alias}_g{generation}"
            if not self.client.collection_exists(name):
                self._create(generation, dimensions, model)
                self._save({**record, "model": model, "dimensions": dimensions})
                return name
        if (name, dimensions, model) not in self._checked:
            self._check_schema(name, dimensions, model)
            self._checked.add((name, dimensions, model))
        return name

    def _create(self, number: int, dimensions: int, model: str | None) -> str:
        collection = f"{self.alias}_g{number}"
        if not self.client.collection_exists(collection):
            self.client.create_collection(
                collection,
                vectors_config={
                    DENSE: qm.VectorParams(size=dimensions, distance=qm.Distance.COSINE)
                },
                sparse_vectors_config={SPARSE: qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
                metadata={"model": model} if model else None,
            )
            for field in ("tenant_id", "document_id", "version"):
                self.client.create_payload_index(collection, field, qm.PayloadSchemaType.KEYWORD)
            self.client.create_payload_index(collection, LIVE, qm.PayloadSchemaType.BOOL)
        self._ensure_registry(collection)
        return collection

    def _point_alias(self, collection: str) -> None:
        """Point the serving name at `collection` in one alias operation."""
        operations: list[qm.AliasOperations] = []
        if self._collection() is not None:
            operations.append(
                qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=self.alias))
            )
        operations.append(
            qm.CreateAliasOperation(
                create_alias=qm.CreateAlias(collection_name=collection, alias_name=self.alias)
            )
        )
        self.client.update_collection_aliases(change_aliases_operations=operations)

    def _ensure_registry(self, collection: str) -> None:
        registry = collection + REGISTRY_SUFFIX
        if not self.client.collection_exists(registry):
            self.client.create_collection(registry, vectors_config={})

    def _check_schema(self, collection: str, dimensions: int, model: str | None) -> None:
        config = self.client.get_collection(collection).config
        if reason := mixed_models(collection, (config.metadata or {}).get("model"), model):
            raise ValueError(reason)
        params = config.params
        dense = params.vectors.get(DENSE) if isinstance(params.vectors, dict) else None
        if dense is None or SPARSE not in (params.sparse_vectors or {}):
            raise ValueError(
                f"collection {collection} lacks the {DENSE!r} and {SPARSE!r} vectors this version "
                "writes (made by an older ragbus?): delete it or the storage and re-ingest"
            )
        if dense.size != dimensions:
            raise ValueError(
                f"collection {collection} holds {dense.size}-dim vectors, model gives {dimensions}"
            )
        unflagged = qm.Filter(must=[qm.IsEmptyCondition(is_empty=qm.PayloadField(key=LIVE))])
        if self.client.count(collection, count_filter=unflagged, exact=False).count:
            raise ValueError(
                f"collection {collection} holds points without the {LIVE!r} flag (made by an "
                "older ragbus): delete it or the storage and re-ingest"
            )
        unregistered = not self.client.collection_exists(collection + REGISTRY_SUFFIX)
        if unregistered and self.client.count(collection, exact=False).count:
            raise ValueError(
                f"collection {collection} has no document registry (made by an older ragbus): "
                "delete it or the storage and re-ingest"
            )
        self._ensure_registry(collection)

    def _registry(self, collection: str) -> str:
        """The document registry of `collection` (the alias or a generation's collection)."""
        if collection == self.alias:
            collection = self._collection() or f"{self.alias}_g1"
        return collection + REGISTRY_SUFFIX

    def _registered(self, collection: str, document_ids: Sequence[str]) -> dict[str, Registered]:
        """The registry's records of `document_ids` (those it has)."""
        records = self.client.retrieve(
            self._registry(collection),
            ids=[_registry_id(d) for d in document_ids],
            with_vectors=False,
        )
        found = [Registered(**(record.payload or {})) for record in records]
        return {record.document_id: record for record in found}

    def _register(self, collection: str, records: Sequence[Registered]) -> None:
        self.client.upsert(
            self._registry(collection),
            points=[qm.PointStruct(id=r.point_id, vector={}, payload=r.payload()) for r in records],
            wait=True,
        )

    def _stored(self, collection: str, ids: Sequence[str]) -> list[str]:
        """Which of `ids` the collection holds."""
        if not ids:
            return []
        records = self.client.retrieve(collection, ids=ids, with_payload=False, with_vectors=False)
        return [str(record.id) for record in records]

    def upsert(self, points: Sequence[Point], generation: int | None = None) -> None:
        """Register the points' ids, then write the points and wait until they are stored; the
        same ids overwrite, never duplicate.

        A point of a version that is already live (a redelivered batch) is written live, so a
        replay never hides part of a served document; any other is written not live.
        """
        collection = self._existing(generation)
        documents = {p.payload["document_id"]: p.payload["tenant_id"] for p in points}
        registered = self._registered(collection, list(documents))
        for document_id, tenant_id in documents.items():
            registered.setdefault(document_id, Registered(document_id, tenant_id))
        for point in points:
            record = registered[point.payload["document_id"]]
            version = record.versions.setdefault(
                point.payload["version"],
                {"uploaded_at": str(point.payload.get("uploaded_at", "")), "ids": []},
            )
            if point.id not in version["ids"]:
                version["ids"].append(point.id)
        self._register(collection, list(registered.values()))
        self.client.upsert(
            collection,
            points=[
                qm.PointStruct(
                    id=p.id,
                    vector={DENSE: list(p.vector), SPARSE: _sparse(p.sparse)},
                    payload={
                        **p.payload,
                        LIVE: registered[p.payload["document_id"]].live == p.payload["version"],
                    },
                )
                for p in points
            ],
            wait=True,
        )

    def count(
        self, document_id: str, version: str | None = None, generation: int | None = None
    ) -> int:
        """A document's points (of one version), live or not."""
        collection = self._target(generation)
        if collection is None:
            return 0
        record = self._registered(collection, [document_id]).get(document_id)
        return len(self._stored(collection, record.ids(version))) if record else 0

    def promote(self, document_id: str, version: str, generation: int | None = None) -> int | None:
        """Make `version` the document's live one and remove every other version's points, in
        one batch of operations; return how many points were removed.

        Embedded storage applies the batch within one call, which no search interleaves with
        (`StoreRunner`); a server applies it in order, so a search in between sees both
        versions, never neither, and `search` keeps only the newest version of a document.
        When a version uploaded later is live already (events met out of order), this one is
        stale: its points are removed instead and None is returned. The registry is updated
        last: a crash before that leaves it listing points already gone, which a redelivery
        finds gone.
        """
        collection = self._target(generation)
        if collection is None:
            return 0
        record = self._registered(collection, [document_id]).get(document_id)
        if record is None or version not in record.versions:
            return 0
        mine = self._stored(collection, record.ids(version))
        served = record.live
        if (
            served not in (None, version)
            and served in record.versions
            and record.uploaded_at(served) > record.uploaded_at(version)
        ):
            self.client.delete(collection, points_selector=qm.PointIdsList(points=mine), wait=True)
            del record.versions[version]
            self._register(collection, [record])
            return None
        stale = self._stored(
            collection, [i for v in record.versions if v != version for i in record.ids(v)]
        )
        operations: list[qm.UpdateOperation] = []
        if mine:
            live = qm.SetPayload(payload={LIVE: True}, points=mine)
            operations.append(qm.SetPayloadOperation(set_payload=live))
        if stale:
            operations.append(qm.DeleteOperation(delete=qm.PointIdsList(points=stale)))
        if operations:
            self.client.batch_update_points(collection, update_operations=operations, wait=True)
        record.live = version
        record.versions = {version: record.versions[version]}
        self._register(collection, [record])
        return len(stale)

    def delete_document(
        self, document_id: str, tenant_id: str, generation: int | None = None
    ) -> int:
        """Remove every point of a tenant's document, of every version; return how many."""
        collection = self._target(generation)
        if collection is None:
            return 0
        record = self._registered(collection, [document_id]).get(document_id)
        if record is None or record.tenant_id != tenant_id:
            return 0
        points = self._stored(collection, record.ids())
        if points:
            self.client.delete(
                collection, points_selector=qm.PointIdsList(points=points), wait=True
            )
        self.client.delete(
            self._registry(collection),
            points_selector=qm.PointIdsList(points=[record.point_id]),
            wait=True,
        )
        return len(points)

    def search(self, request: SearchRequest, generation: int | None = None) -> list[Hit]:
        """The tenant's best chunks; `filters` match metadata fields exactly.

        The tenant filter sits on every ranking, fused or not, so no other tenant's chunk can
        enter a candidate list.
        """
        collection = self._target(generation)
        if collection is None:
            return []
        must = [_match("tenant_id", request.tenant_id), _match(LIVE, True)]
        must += [_match(f"metadata.{key}", value) for key, value in request.filters.items()]
        where = qm.Filter(must=must)
        dense = list(request.dense) if request.dense is not None else None
        sparse = _sparse(request.sparse) if request.sparse else None
        if dense is not None and sparse is not None:
            depth = max(FUSION_FLOOR, FUSION_DEPTH * request.limit)
            result = self.client.query_points(
                collection,
                prefetch=[
                    qm.Prefetch(query=dense, using=DENSE, filter=where, limit=depth),
                    qm.Prefetch(query=sparse, using=SPARSE, filter=where, limit=depth),
                ],
                query=qm.FusionQuery(fusion=qm.Fusion.RRF),
                limit=request.limit,
                with_payload=True,
            )
        elif dense is not None or sparse is not None:
            result = self.client.query_points(
                collection,
                query=dense if dense is not None else sparse,
                using=DENSE if dense is not None else SPARSE,
                query_filter=where,
                limit=request.limit,
                with_payload=True,
            )
        else:
            return []
        return newest_versions([Hit(str(p.id), p.score, p.payload or {}) for p in result.points])

    def generation(self) -> int:
        """The generation the alias serves now (0 before the first collection exists)."""
        return generation_of(self._collection() or "")

    def info(self, tenant_id: str | None = None, generation: int | None = None) -> IndexInfo:
        """A generation (the serving one), with the points and documents it holds (of
        `tenant_id`)."""
        target = self._target(generation)
        collection = (
            self._collection() if generation is None else f"{self.alias}_g{generation}"
        ) or ""
        where = qm.Filter(must=[_match("tenant_id", tenant_id)]) if tenant_id else None
        points = self.client.count(target, count_filter=where, exact=True).count if target else 0
        documents = 0
        if points and target:
            facet = self.client.facet(
                target, key="document_id", facet_filter=where, limit=points, exact=True
            )
            documents = len(facet.hits)
        return IndexInfo.of(self.alias, collection, points, documents)

    def generations(self) -> list[Generation]:
        serving = generation_of(self._collection() or "")
        return [
            Generation(
                number=number,
                collection=f"{self.alias}_g{number}",
                state="serving" if number == serving else record.get("state", "kept"),
                plan_id=str(record.get("plan_id", number)),
                dimensions=record.get("dimensions"),
                model=record.get("model"),
                embed_model=record.get("embed_model"),
                chunk_tokens=record.get("chunk_tokens"),
                overlap=record.get("overlap"),
                indexed=True,  # a server builds its graphs itself
                kept_since=record.get("kept_since", 0),
            )
            for number, record in sorted(self._records().items())
        ]

    def plan(
        self, embed_model: str | None, chunk_tokens: int | None, overlap: int | None
    ) -> Generation:
        generations = self.generations()
        if building := [g for g in generations if g.state == "building"]:
            raise ValueError(
                f"generation {building[0].number} is being built already: promote or drop it first"
            )
        number = self._next_number(self._records())
        record = {
            "number": number,
            "collection": f"{self.alias}_g{number}",
            "plan_id": uuid.uuid4().hex,
            "state": "building",
            "embed_model": embed_model,
            "chunk_tokens": chunk_tokens,
            "overlap": overlap,
        }
        self._save(record)
        return next(g for g in self.generations() if g.number == number)

    def document_ids(self, generation: int) -> set[str]:
        target = self._target(generation)
        if target is None:
            return set()
        live = qm.Filter(must=[_match(LIVE, True)])
        count = self.client.count(target, count_filter=live, exact=True).count
        if not count:
            return set()
        facet = self.client.facet(
            target, key="document_id", facet_filter=live, limit=count, exact=True
        )
        return {str(hit.value) for hit in facet.hits}

    def sample(self, generation: int | None, documents: int) -> list[Hit]:
        target = self._target(generation)
        if target is None:
            return []
        records, _ = self.client.scroll(
            target,
            scroll_filter=qm.Filter(must=[_match(LIVE, True)]),
            limit=documents * SAMPLED_PER_DOCUMENT,
            with_payload=True,
        )
        return one_per_document(((record.id, record.payload) for record in records), documents)

    def begin_build(self, generation: int) -> None:
        """A server optimizes its collections itself: nothing to start."""
        self._target(generation)

    def finish_build(self, generation: int) -> bool:
        self._target(generation)
        return True

    def swap(self, generation: int, keep: int) -> list[int]:
        records = self._records()
        if generation not in records:
            raise UnknownGeneration(f"index {self.alias!r} has no generation {generation}")
        collection = f"{self.alias}_g{generation}"
        if not self.client.collection_exists(collection):
            raise ValueError(f"generation {generation} holds nothing yet")
        serving = generation_of(self._collection() or "")
        self._point_alias(collection)
        if serving and serving != generation:
            self._save({**records[serving], "state": "kept", "kept_since": time.time_ns()})
        self._save({**records[generation], "state": "serving"})
        kept = oldest_kept_first(self.generations())
        dropped = [g.number for g in kept[: max(0, len(kept) - keep)]]
        for number in dropped:
            self.drop(number)
        return dropped

    def drop(self, generation: int) -> None:
        if generation == generation_of(self._collection() or ""):
            raise ValueError(f"generation {generation} serves: swap to another first")
        collection = f"{self.alias}_g{generation}"
        for name in (collection, collection + REGISTRY_SUFFIX):
            if self.client.collection_exists(name):
                self.client.delete_collection(name)
        self.client.delete(
            self._catalog,
            points_selector=qm.PointIdsList(points=[_catalog_id(str(generation))]),
            wait=True,
        )
        self._known.pop(generation, None)

    def close(self) -> None:
        self.client.close()


def _sparse(vector: SparseVector) -> qm.SparseVector:
    return qm.SparseVector(indices=list(vector.indices), values=list(vector.values))


class StoreRunner:
    """Runs blocking store calls on one dedicated thread: the event loop stays free, and the
    embedded storage (not thread-safe) sees one call at a time even when services share it."""

    def __init__(self, store: VectorStore) -> None:
        self.store = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")

    async def run(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def close(self) -> None:
        await self.run(self.store.close)
        self._executor.shutdown(wait=True)
