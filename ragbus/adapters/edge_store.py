"""The embedded vector store: Qdrant's own engine in-process (`qdrant-edge-py`), the default when
no `QDRANT_URL` is set.

Each generation is one Edge shard directory under the store's root (`<alias>_g<N>`), open beside
the others; the serving name is a small JSON pointer (`generations.json`) replaced atomically,
with what each generation was built with (dimensions, model, chunking) and where it stands
(building, serving, kept). A generation's HNSW graph is built by `python -m
ragbus.adapters.edge_build` in a process of its own while its shard is closed here
(`begin_build`/`end_build`): `optimize()` holds the GIL throughout, which would stall every
query of the serving process. Each point holds the named dense vector (cosine) and the
BM25 sparse vector (Qdrant's IDF modifier); hybrid search fuses both rankings by RRF inside the
engine. Payload indexes on tenant, document, version and the live flag make every per-document
lookup an index lookup, so no registry beside the points is needed (embedded qdrant-client
scanned every point per filter).

Versions swap as in `QdrantStore`: a version's points are written not live, `promote` makes the
complete version live by point id and deletes the others. A swap touches one document's points
(tens), never a generation-wide flag: flipping 10k points by filter took 1.9 s on Edge and made
the next HNSW build take 27 s.

Every Edge call holds the GIL and one handle locks its shard directory: `StoreRunner` runs the
calls on one thread, and the services of one process share one store.
"""

import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeSparseVectorParams,
    EdgeVectorParams,
    FacetRequest,
    FieldCondition,
    Filter,
    Fusion,
    HnswIndexConfig,
    KeywordIndexParams,
    MatchValue,
    Modifier,
    PayloadSchemaType,
    Prefetch,
    Query,
    QueryRequest,
    ScrollRequest,
    SearchParams,
    SparseVector,
    UpdateOperation,
)
from qdrant_edge import Point as EdgePoint

from ragbus.adapters.store import (
    DENSE,
    FUSION_DEPTH,
    FUSION_FLOOR,
    LIVE,
    SPARSE,
    newest_versions,
)
from ragbus.ports import (
    Generation,
    GenerationBusy,
    Hit,
    IndexInfo,
    Point,
    SearchRequest,
    UnknownGeneration,
    generation_of,
    mixed_models,
    oldest_kept_first,
)
from ragbus.sparse import SparseVector as Sparse

POINTER = "generations.json"
# RRF's k as Qdrant's query API uses it, so both stores fuse alike.
RRF_K = 2
# Candidates the HNSW search explores: recall@5 at 100k points was 0.955 at the default ef,
# 0.979 at 128 and 0.996 at 256 (p50 2.1 ms) without filters; under the tenant and live filters
# of every search, 256 gave 0.956-0.992 from one build to the next.
HNSW_EF = 512
# A graph per tenant beside the global one (`payload_m`, over the is_tenant index): every search
# is filtered by tenant, and the global graph alone gave recall@5 0.938 under the tenant and
# live filters at 100k points; with the per-tenant links, 0.998 (`make bench-query`).
HNSW = HnswIndexConfig(m=16, ef_construct=200, full_scan_threshold=10_000, payload_m=16)
# Per-document lookups never need more; a document has at most this many chunks per version.
MAX_DOCUMENT_POINTS = 100_000
# Points written to a shard between flushes. A flush holds the GIL for ~10 µs per point written
# since the last one: closing a shard for its build after 100k unflushed points stalled queries
# for 888 ms; flushed every 5,000 points, each flush took ~50 ms and the close 115 ms.
FLUSH_EVERY = 2_000
# Points read per document wanted by `sample` (documents have several chunks each).
SAMPLED_PER_DOCUMENT = 20


def match(key: str, value: str | bool) -> Any:
    """An exact-match condition (typed Any: the stub's lists of conditions are invariant). A
    Python bool would be converted to the integer 1 and match nothing, silently: Edge matches a
    numpy bool as a bool."""
    matched: Any = np.bool_(value) if isinstance(value, bool) else value
    return FieldCondition(key, match=MatchValue(matched))


class EdgeStore:
    """`VectorStore` on Qdrant's engine, embedded: one shard directory per generation."""

    def __init__(self, root: Path, alias: str) -> None:
        self.root = root
        self.alias = alias
        self.root.mkdir(parents=True, exist_ok=True)
        pointer = self._read_pointer()
        self._serving: str | None = pointer.get("serving")
        self._generations: dict[str, dict[str, Any]] = pointer.get("generations", {})
        # Numbers are never reused: a chunker's consumer group is named after its generation.
        self._next: int = pointer.get(
            "next", 1 + max(map(generation_of, self._generations), default=0)
        )
        for record in self._generations.values():
            record.pop("sealed", None)  # a build cut short by a crash: the shard opens as it was
        self._unflushed: dict[str, int] = {}
        self._shards: dict[str, EdgeShard] = {
            name: EdgeShard.load(str(self.root / name))
            for name in self._generations
            if (self.root / name).exists()
        }

    def _read_pointer(self) -> dict[str, Any]:
        path = self.root / POINTER
        if not path.exists():
            return {}
        pointer: dict[str, Any] = json.loads(path.read_text())
        return pointer

    def _write_pointer(self) -> None:
        """Replace the pointer whole: a crash leaves the old one or the new one, never half."""
        path = self.root / POINTER
        scratch = path.with_suffix(".tmp")
        scratch.write_text(
            json.dumps(
                {
                    "alias": self.alias,
                    "serving": self._serving,
                    "next": self._next,
                    "generations": self._generations,
                }
            )
        )
        os.replace(scratch, path)

    def _name(self, generation: int | None) -> str | None:
        """The collection of a generation (None: the serving one, None before there is one;
        generation 1 before there is one is the first, created serving by its first vectors)."""
        if generation is None or (generation == 1 and self._serving is None):
            return self._serving
        name = f"{self.alias}_g{generation}"
        if name not in self._generations:
            raise UnknownGeneration(
                f"index {self.alias!r} has no generation {generation} (dropped, or never planned)"
            )
        return name

    def ensure_collection(
        self, dimensions: int, model: str | None = None, generation: int | None = None
    ) -> str:
        """The generation's collection (generation 1 created on first use), its shard created
        with the first vectors' dimensions and model; vectors of other dimensions or another
        model are refused."""
        name = self._name(generation)
        if name is None:
            name = self._new_record("serving", None, None, None)["collection"]
            self._serving = name
        recorded = self._generations[name]
        if recorded.get("dimensions") is None:
            self._shards[name] = _create_shard(self.root / name, dimensions)
            recorded.update(dimensions=dimensions, model=model)
            self._write_pointer()
            return name
        if recorded["dimensions"] != dimensions:
            raise ValueError(
                f"collection {name} holds {recorded['dimensions']}-dim vectors, "
                f"model gives {dimensions}"
            )
        if reason := mixed_models(name, recorded.get("model"), model):
            raise ValueError(reason)
        return name

    def _new_record(
        self,
        state: str,
        embed_model: str | None,
        chunk_tokens: int | None,
        overlap: int | None,
    ) -> dict[str, Any]:
        name = f"{self.alias}_g{self._next}"
        self._next += 1
        record = {
            "collection": name,
            "state": state,
            "plan_id": uuid.uuid4().hex,
            "embed_model": embed_model,
            "chunk_tokens": chunk_tokens,
            "overlap": overlap,
        }
        self._generations[name] = record
        self._write_pointer()
        return record

    def _shard_of(self, generation: int | None) -> EdgeShard | None:
        name = self._name(generation)
        if name is None or name not in self._generations:
            return None
        if name in self._building:
            raise GenerationBusy(f"generation {generation} is closed while its HNSW graph is built")
        return self._shards.get(name)

    @property
    def _building(self) -> set[str]:
        return {name for name, record in self._generations.items() if record.get("sealed")}

    def _shard(self, generation: int | None) -> EdgeShard:
        shard = self._shard_of(generation)
        if shard is None:
            raise ValueError("the index has no collection yet: nothing was indexed")
        return shard

    @property
    def shard(self) -> EdgeShard:
        """The serving generation's shard."""
        return self._shard(None)

    def _ids(self, shard: EdgeShard, where: Filter) -> list[Any]:
        records, _ = shard.scroll(
            ScrollRequest(limit=MAX_DOCUMENT_POINTS, filter=where, with_payload=False)
        )
        return [record.id for record in records]

    def _live_version(self, shard: EdgeShard, document_id: str) -> tuple[str, str] | None:
        """(version, upload time) of the document's live version, if one is live."""
        records, _ = shard.scroll(
            ScrollRequest(
                limit=1,
                filter=Filter(must=[match("document_id", document_id), match(LIVE, True)]),
                with_payload=True,
            )
        )
        if not records:
            return None
        payload = records[0].payload or {}
        return str(payload.get("version")), str(payload.get("uploaded_at", ""))

    def upsert(self, points: Sequence[Point], generation: int | None = None) -> None:
        """Write the points; the same ids overwrite, never duplicate. A point of a version that
        is already live (a redelivered batch) is written live, any other not live."""
        shard = self._shard(generation)
        live = {
            document_id: self._live_version(shard, document_id)
            for document_id in {point.payload["document_id"] for point in points}
        }

        def is_live(point: Point) -> bool:
            served = live[point.payload["document_id"]]
            return served is not None and served[0] == point.payload["version"]

        shard.update(
            UpdateOperation.upsert_points(
                [
                    EdgePoint(
                        point.id,
                        {DENSE: list(point.vector), SPARSE: _sparse(point.sparse)},
                        {**point.payload, LIVE: is_live(point)},
                    )
                    for point in points
                ]
            )
        )
        name = self._name(generation) or ""
        self._unflushed[name] = self._unflushed.get(name, 0) + len(points)
        if self._unflushed[name] >= FLUSH_EVERY:
            shard.flush()
            self._unflushed[name] = 0

    def count(
        self, document_id: str, version: str | None = None, generation: int | None = None
    ) -> int:
        """A document's points (of one version), live or not."""
        shard = self._shard_of(generation)
        if shard is None:
            return 0
        must = [match("document_id", document_id)]
        if version is not None:
            must.append(match("version", version))
        return shard.count(CountRequest(filter=Filter(must=must)))

    def promote(self, document_id: str, version: str, generation: int | None = None) -> int | None:
        """Make `version` the document's live one and remove every other version's points;
        return how many were removed. When a version uploaded later is live already (events met
        out of order), this one is stale: its points are removed and None is returned."""
        shard = self._shard_of(generation)
        if shard is None:
            return 0
        document = match("document_id", document_id)
        mine = self._ids(shard, Filter(must=[document, match("version", version)]))
        if not mine:
            return 0
        served = self._live_version(shard, document_id)
        if served is not None and served[0] != version:
            records = shard.retrieve(list(mine[:1]), with_payload=True, with_vector=False)
            uploaded = str((records[0].payload or {}).get("uploaded_at", "")) if records else ""
            if served[1] > uploaded:
                shard.update(UpdateOperation.delete_points(list(mine)))
                return None
        stale = self._ids(shard, Filter(must=[document], must_not=[match("version", version)]))
        shard.update(UpdateOperation.set_payload(list(mine), {LIVE: True}))
        if stale:
            shard.update(UpdateOperation.delete_points(list(stale)))
        return len(stale)

    def delete_document(
        self, document_id: str, tenant_id: str, generation: int | None = None
    ) -> int:
        """Remove every point of a tenant's document, of every version; return how many."""
        shard = self._shard_of(generation)
        if shard is None:
            return 0
        where = Filter(must=[match("document_id", document_id), match("tenant_id", tenant_id)])
        removed = shard.count(CountRequest(filter=where))
        if removed:
            shard.update(UpdateOperation.delete_points_by_filter(where))
        return removed

    def search(self, request: SearchRequest, generation: int | None = None) -> list[Hit]:
        """The tenant's best live chunks; `filters` match metadata fields exactly. The tenant
        filter sits on every ranking, so no other tenant's chunk enters a candidate list."""
        shard = self._shard_of(generation)
        if shard is None:
            return []
        must = [match("tenant_id", request.tenant_id), match(LIVE, True)]
        must += [match(f"metadata.{key}", value) for key, value in request.filters.items()]
        where = Filter(must=must)
        params = SearchParams(hnsw_ef=HNSW_EF)
        rankings = []
        if request.dense is not None:
            rankings.append(Query.Nearest(list(request.dense), using=DENSE))
        if request.sparse:
            rankings.append(Query.Nearest(_sparse(request.sparse), using=SPARSE))
        if not rankings:
            return []
        if len(rankings) == 2:
            depth = max(FUSION_FLOOR, FUSION_DEPTH * request.limit)
            query = QueryRequest(
                limit=request.limit,
                prefetches=[
                    Prefetch(limit=depth, query=ranking, filter=where, params=params)
                    for ranking in rankings
                ],
                query=Fusion.Rrf(k=RRF_K),  # type: ignore[arg-type]  # the stub omits Rrf
                with_payload=True,
            )
        else:
            query = QueryRequest(
                limit=request.limit,
                query=rankings[0],
                filter=where,
                params=params,
                with_payload=True,
            )
        scored = shard.query(query)
        return newest_versions([Hit(str(p.id), p.score, p.payload or {}) for p in scored])

    def generation(self) -> int:
        """The generation the serving name points at (0 before the first one exists)."""
        return generation_of(self._serving or "")

    def info(self, tenant_id: str | None = None, generation: int | None = None) -> IndexInfo:
        """A generation (the serving one), with the points and documents it holds (of
        `tenant_id`)."""
        collection = self._name(generation) or ""
        points = documents = 0
        shard = self._shard_of(generation)
        if shard is not None:
            where = Filter(must=[match("tenant_id", tenant_id)]) if tenant_id else None
            points = shard.count(CountRequest(filter=where))
            if points:
                facet = shard.facet(
                    FacetRequest("document_id", limit=points, exact=True, filter=where)
                )
                documents = len(facet.hits)
        return IndexInfo.of(self.alias, collection, points, documents)

    def generations(self) -> list[Generation]:
        return sorted(
            (_generation(name, record) for name, record in self._generations.items()),
            key=lambda generation: generation.number,
        )

    def plan(
        self, embed_model: str | None, chunk_tokens: int | None, overlap: int | None
    ) -> Generation:
        if building := [g for g in self.generations() if g.state == "building"]:
            raise ValueError(
                f"generation {building[0].number} is being built already: promote or drop it first"
            )
        record = self._new_record("building", embed_model, chunk_tokens, overlap)
        return _generation(record["collection"], record)

    def document_ids(self, generation: int) -> set[str]:
        shard = self._shard_of(generation)
        if shard is None:
            return set()
        where = Filter(must=[match(LIVE, True)])
        live = shard.count(CountRequest(filter=where))
        if not live:
            return set()
        facet = shard.facet(FacetRequest("document_id", limit=live, exact=True, filter=where))
        return {str(hit.value) for hit in facet.hits}

    def sample(self, generation: int | None, documents: int) -> list[Hit]:
        shard = self._shard_of(generation)
        if shard is None:
            return []
        records, _ = shard.scroll(
            ScrollRequest(
                limit=documents * SAMPLED_PER_DOCUMENT,
                filter=Filter(must=[match(LIVE, True)]),
                with_payload=True,
            )
        )
        return _one_per_document([Hit(str(r.id), 1.0, r.payload or {}) for r in records], documents)

    def begin_build(self, generation: int) -> list[str] | None:
        """Close the generation's shard for a build in another process: `optimize()` holds the
        GIL for its whole run (77 s at 100k points), which would stall every query here."""
        name = self._name(generation)
        assert name is not None
        shard = self._shards.pop(name, None)
        if shard is None:
            return None
        shard.flush()
        shard.close()
        self._generations[name]["sealed"] = True
        self._write_pointer()
        dimensions = str(self._generations[name]["dimensions"])
        return [
            sys.executable,
            "-m",
            "ragbus.adapters.edge_build",
            str(self.root / name),
            dimensions,
        ]

    def end_build(self, generation: int) -> None:
        name = self._name(generation)
        assert name is not None
        record = self._generations[name]
        if record.pop("sealed", False):
            self._shards[name] = EdgeShard.load(str(self.root / name))
            record["indexed"] = True
        self._write_pointer()

    def swap(self, generation: int, keep: int) -> list[int]:
        name = self._name(generation)
        assert name is not None
        if self._generations[name].get("dimensions") is None:
            raise ValueError(f"generation {generation} holds nothing yet")
        if self._serving is not None and self._serving != name:
            self._generations[self._serving].update(state="kept", kept_since=time.time_ns())
        self._generations[name]["state"] = "serving"
        self._serving = name
        kept = oldest_kept_first(self.generations())
        dropped = [g.number for g in kept[: max(0, len(kept) - keep)]]
        for number in dropped:
            self._forget(number)
        self._write_pointer()
        return dropped

    def drop(self, generation: int) -> None:
        if self._name(generation) == self._serving:
            raise ValueError(f"generation {generation} serves: swap to another first")
        self._forget(generation)
        self._write_pointer()

    def _forget(self, generation: int) -> None:
        name = self._name(generation)
        assert name is not None
        shard = self._shards.pop(name, None)
        if shard is not None:
            shard.close()
        del self._generations[name]
        shutil.rmtree(self.root / name, ignore_errors=True)

    def close(self) -> None:
        for shard in self._shards.values():
            shard.flush()
            shard.close()
        self._shards.clear()


def _one_per_document(hits: list[Hit], documents: int) -> list[Hit]:
    first = {str(hit.payload.get("document_id")): hit for hit in reversed(hits)}
    return list(first.values())[:documents]


def _generation(name: str, record: dict[str, Any]) -> Generation:
    return Generation(
        number=generation_of(name),
        collection=name,
        state=record.get("state", "serving"),
        plan_id=record.get("plan_id", name),
        dimensions=record.get("dimensions"),
        model=record.get("model"),
        embed_model=record.get("embed_model"),
        chunk_tokens=record.get("chunk_tokens"),
        overlap=record.get("overlap"),
        indexed=bool(record.get("indexed")),
        kept_since=record.get("kept_since", 0),
    )


def shard_config(dimensions: int) -> EdgeConfig:
    """A generation's shard: the named vectors and their HNSW graphs."""
    return EdgeConfig(
        vectors={DENSE: EdgeVectorParams(size=dimensions, distance=Distance.Cosine)},
        sparse_vectors={SPARSE: EdgeSparseVectorParams(modifier=Modifier.Idf)},
        hnsw_config=HNSW,
    )


def _create_shard(path: Path, dimensions: int) -> EdgeShard:
    shard = EdgeShard.create(str(path), shard_config(dimensions))
    shard.update(
        UpdateOperation.create_field_index("tenant_id", KeywordIndexParams(is_tenant=True))
    )
    for field in ("document_id", "version"):
        shard.update(UpdateOperation.create_field_index(field, PayloadSchemaType.Keyword))
    shard.update(UpdateOperation.create_field_index(LIVE, PayloadSchemaType.Bool))
    return shard


def _sparse(vector: Sparse) -> SparseVector:
    return SparseVector(list(vector.indices), list(vector.values))


def stored_points(
    root: Path, alias: str, generation: int | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Every point of a generation (the serving one) with its payload, read from the storage
    itself (for audits: the process that serves it must have stopped, one opener per
    directory)."""
    store = EdgeStore(root, alias)
    try:
        shard = store._shard_of(generation)
        if shard is None:
            return []
        points: list[tuple[str, dict[str, Any]]] = []
        offset = None
        while True:
            records, offset = shard.scroll(
                ScrollRequest(offset=offset, limit=1000, with_payload=True)
            )
            points += [(str(record.id), record.payload or {}) for record in records]
            if offset is None:
                return points
    finally:
        store.close()
