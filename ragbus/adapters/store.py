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
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from qdrant_client import QdrantClient
from qdrant_client import models as qm

from ragbus.ports import (
    Hit,
    IndexInfo,
    Payload,
    Point,
    SearchRequest,
    VectorStore,
    generation_of,
    mixed_models,
)
from ragbus.sparse import SparseVector

T = TypeVar("T")

DENSE = "dense"
SPARSE = "sparse"
LIVE = "live"
REGISTRY_SUFFIX = "_documents"
_REGISTRY_IDS = uuid.UUID("8d3c1f2e-57a4-4b8e-9c61-0f2a7e5d4b13")
# Candidates each ranking contributes to the fusion, per result asked for (at least FUSION_FLOOR).
FUSION_DEPTH = 4
FUSION_FLOOR = 40


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


def _match(key: str, value: Any) -> qm.FieldCondition:
    return qm.FieldCondition(key=key, match=qm.MatchValue(value=value))


class QdrantStore:
    """`VectorStore` on Qdrant."""

    def __init__(self, client: QdrantClient, alias: str) -> None:
        self.client = client
        self.alias = alias
        self._checked: set[tuple[str, int, str | None]] = set()

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

    def ensure_collection(self, dimensions: int, model: str | None = None) -> str:
        """The alias's collection, creating generation 1 (recording its model), its registry
        and the alias when there is none."""
        existing = self._collection()
        if existing is not None:
            if (existing, dimensions, model) not in self._checked:
                self._check_schema(existing, dimensions, model)
                self._checked.add((existing, dimensions, model))
            return existing
        collection = f"{self.alias}_g1"
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
        self.client.update_collection_aliases(
            change_aliases_operations=[
                qm.CreateAliasOperation(
                    create_alias=qm.CreateAlias(collection_name=collection, alias_name=self.alias)
                )
            ]
        )
        return collection

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

    def _registry(self) -> str:
        return (self._collection() or f"{self.alias}_g1") + REGISTRY_SUFFIX

    def _registered(self, document_ids: Sequence[str]) -> dict[str, Registered]:
        """The registry's records of `document_ids` (those it has)."""
        records = self.client.retrieve(
            self._registry(), ids=[_registry_id(d) for d in document_ids], with_vectors=False
        )
        found = [Registered(**(record.payload or {})) for record in records]
        return {record.document_id: record for record in found}

    def _register(self, records: Sequence[Registered]) -> None:
        self.client.upsert(
            self._registry(),
            points=[qm.PointStruct(id=r.point_id, vector={}, payload=r.payload()) for r in records],
            wait=True,
        )

    def _stored(self, ids: Sequence[str]) -> list[str]:
        """Which of `ids` the collection holds."""
        if not ids:
            return []
        records = self.client.retrieve(self.alias, ids=ids, with_payload=False, with_vectors=False)
        return [str(record.id) for record in records]

    def upsert(self, points: Sequence[Point]) -> None:
        """Register the points' ids, then write the points and wait until they are stored; the
        same ids overwrite, never duplicate.

        A point of a version that is already live (a redelivered batch) is written live, so a
        replay never hides part of a served document; any other is written not live.
        """
        documents = {p.payload["document_id"]: p.payload["tenant_id"] for p in points}
        registered = self._registered(list(documents))
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
        self._register(list(registered.values()))
        self.client.upsert(
            self.alias,
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

    def count(self, document_id: str, version: str | None = None) -> int:
        """A document's points (of one version), live or not."""
        record = self._registered([document_id]).get(document_id)
        return len(self._stored(record.ids(version))) if record else 0

    def promote(self, document_id: str, version: str) -> int | None:
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
        record = self._registered([document_id]).get(document_id)
        if record is None or version not in record.versions:
            return 0
        mine = self._stored(record.ids(version))
        served = record.live
        if (
            served not in (None, version)
            and served in record.versions
            and record.uploaded_at(served) > record.uploaded_at(version)
        ):
            self.client.delete(self.alias, points_selector=qm.PointIdsList(points=mine), wait=True)
            del record.versions[version]
            self._register([record])
            return None
        stale = self._stored([i for v in record.versions if v != version for i in record.ids(v)])
        operations: list[qm.UpdateOperation] = []
        if mine:
            live = qm.SetPayload(payload={LIVE: True}, points=mine)
            operations.append(qm.SetPayloadOperation(set_payload=live))
        if stale:
            operations.append(qm.DeleteOperation(delete=qm.PointIdsList(points=stale)))
        if operations:
            self.client.batch_update_points(self.alias, update_operations=operations, wait=True)
        record.live = version
        record.versions = {version: record.versions[version]}
        self._register([record])
        return len(stale)

    def delete_document(self, document_id: str, tenant_id: str) -> int:
        """Remove every point of a tenant's document, of every version; return how many."""
        if self._collection() is None:
            return 0
        record = self._registered([document_id]).get(document_id)
        if record is None or record.tenant_id != tenant_id:
            return 0
        points = self._stored(record.ids())
        if points:
            self.client.delete(
                self.alias, points_selector=qm.PointIdsList(points=points), wait=True
            )
        self.client.delete(
            self._registry(), points_selector=qm.PointIdsList(points=[record.point_id]), wait=True
        )
        return len(points)

    def search(self, request: SearchRequest) -> list[Hit]:
        """The tenant's best chunks; `filters` match metadata fields exactly.

        The tenant filter sits on every ranking, fused or not, so no other tenant's chunk can
        enter a candidate list.
        """
        must = [_match("tenant_id", request.tenant_id), _match(LIVE, True)]
        must += [_match(f"metadata.{key}", value) for key, value in request.filters.items()]
        where = qm.Filter(must=must)
        dense = list(request.dense) if request.dense is not None else None
        sparse = _sparse(request.sparse) if request.sparse else None
        if dense is not None and sparse is not None:
            depth = max(FUSION_FLOOR, FUSION_DEPTH * request.limit)
            result = self.client.query_points(
                self.alias,
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
                self.alias,
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

    def info(self, tenant_id: str | None = None) -> IndexInfo:
        """The serving collection, with the points and documents it holds (of `tenant_id`)."""
        collection = self._collection() or ""
        where = qm.Filter(must=[_match("tenant_id", tenant_id)]) if tenant_id else None
        points = (
            self.client.count(self.alias, count_filter=where, exact=True).count if collection else 0
        )
        documents = 0
        if points:
            facet = self.client.facet(
                self.alias, key="document_id", facet_filter=where, limit=points, exact=True
            )
            documents = len(facet.hits)
        return IndexInfo.of(self.alias, collection, points, documents)

    def close(self) -> None:
        self.client.close()


def newest_versions(hits: list[Hit]) -> list[Hit]:
    """Only the hits of each document's most recently uploaded version (see `promote`)."""

    def document_of(hit: Hit) -> str:
        return str(hit.payload.get("document_id"))

    def upload_of(hit: Hit) -> tuple[str, str]:
        return str(hit.payload.get("uploaded_at", "")), str(hit.payload.get("version"))

    newest: dict[str, tuple[str, str]] = {}
    for hit in hits:
        newest[document_of(hit)] = max(newest.get(document_of(hit), ("", "")), upload_of(hit))
    return [hit for hit in hits if upload_of(hit)[1] == newest[document_of(hit)][1]]


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
