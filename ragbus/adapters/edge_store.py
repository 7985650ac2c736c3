"""The embedded vector store: Qdrant's own engine (`qdrant-edge-py`), the default when no
`QDRANT_URL` is set.

Each generation is one Edge shard directory under the store's root (`<alias>_g<N>`), served by a
process of its own (`ragbus.adapters.edge_shard`): every Edge call holds the GIL, and in the
serving process the searches, a shard's load and close, and above all an HNSW build (`optimize()`,
77 s at 100k points) stalled everything else. The serving name is a small JSON pointer
(`generations.json`) replaced atomically, with what each generation was built with (dimensions,
model, chunking) and where it stands (building, serving, kept). Each point holds the named dense
vector (cosine) and the BM25 sparse vector (Qdrant's IDF modifier); hybrid search fuses both
rankings by RRF inside the engine. Payload indexes on tenant, document, version and the live flag
make every per-document lookup an index lookup, so no registry beside the points is needed
(embedded qdrant-client scanned every point per filter).

Versions swap as in `QdrantStore`: a version's points are written not live, `promote` makes the
complete version live by point id and deletes the others. A swap touches one document's points
(tens), never a generation-wide flag: flipping 10k points by filter took 1.9 s on Edge and made
the next HNSW build take 27 s.

One process opens a shard directory at a time (its WAL lock): `StoreRunner` runs the calls on one
thread, and the services of one process share one store.
"""

import json
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ragbus.adapters.edge_shard import LOCK_WAIT_S, Shard, ShardProcess
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

POINTER = "generations.json"


class EdgeStore:
    """`VectorStore` on Qdrant's engine, embedded: one shard directory (and process) per
    generation."""

    def __init__(self, root: Path, alias: str, lock_wait_s: float = LOCK_WAIT_S) -> None:
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
        self._shards: dict[str, ShardProcess] = {}
        try:
            for name, record in self._generations.items():
                if (self.root / name).exists() and record.get("dimensions") is not None:
                    path, dimensions = self.root / name, record["dimensions"]
                    self._shards[name] = ShardProcess(path, dimensions, False, lock_wait_s)
        except BaseException:
            self.close()
            raise

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
            self._shards[name] = ShardProcess(self.root / name, dimensions, create=True)
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

    def _shard_of(self, generation: int | None) -> ShardProcess | None:
        name = self._name(generation)
        if name is None or name not in self._generations:
            return None
        if self._generations[name].get("sealed"):
            raise GenerationBusy(f"generation {generation} is busy while its HNSW graph is built")
        return self._shards.get(name)

    def shard(self, generation: int | None = None) -> ShardProcess:
        """A generation's shard (the serving one's)."""
        shard = self._shard_of(generation)
        if shard is None:
            raise ValueError("the index has no collection yet: nothing was indexed")
        return shard

    def shard_pids(self) -> dict[int, int]:
        """The process id of each generation's shard process."""
        return {generation_of(name): shard.pid for name, shard in self._shards.items()}

    def upsert(self, points: Sequence[Point], generation: int | None = None) -> None:
        """Write the points; the same ids overwrite, never duplicate. A point of a version that
        is already live (a redelivered batch) is written live, any other not live."""
        self.shard(generation).call(Shard.upsert, list(points))

    def count(
        self, document_id: str, version: str | None = None, generation: int | None = None
    ) -> int:
        """A document's points (of one version), live or not."""
        shard = self._shard_of(generation)
        return 0 if shard is None else shard.call(Shard.count, document_id, version)

    def promote(self, document_id: str, version: str, generation: int | None = None) -> int | None:
        """Make `version` the document's live one and remove every other version's points;
        return how many were removed. When a version uploaded later is live already (events met
        out of order), this one is stale: its points are removed and None is returned."""
        shard = self._shard_of(generation)
        return 0 if shard is None else shard.call(Shard.promote, document_id, version)

    def delete_document(
        self, document_id: str, tenant_id: str, generation: int | None = None
    ) -> int:
        """Remove every point of a tenant's document, of every version; return how many."""
        shard = self._shard_of(generation)
        return 0 if shard is None else shard.call(Shard.delete_document, document_id, tenant_id)

    def search(self, request: SearchRequest, generation: int | None = None) -> list[Hit]:
        """The tenant's best live chunks; `filters` match metadata fields exactly."""
        shard = self._shard_of(generation)
        return [] if shard is None else shard.call(Shard.search, request)

    def generation(self) -> int:
        """The generation the serving name points at (0 before the first one exists)."""
        return generation_of(self._serving or "")

    def info(self, tenant_id: str | None = None, generation: int | None = None) -> IndexInfo:
        """A generation (the serving one), with the points and documents it holds (of
        `tenant_id`)."""
        collection = self._name(generation) or ""
        shard = self._shard_of(generation)
        points, documents = (0, 0) if shard is None else shard.call(Shard.info, tenant_id)
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
        return set() if shard is None else shard.call(Shard.document_ids)

    def sample(self, generation: int | None, documents: int) -> list[Hit]:
        shard = self._shard_of(generation)
        return [] if shard is None else shard.call(Shard.sample, documents)

    def begin_build(self, generation: int) -> None:
        """Start building the generation's HNSW graph in its shard's process; its calls raise
        `GenerationBusy` until `finish_build`."""
        shard = self._shard_of(generation)
        if shard is None:
            return
        shard.start(Shard.optimize)
        name = self._name(generation)
        assert name is not None
        self._generations[name]["sealed"] = True
        self._write_pointer()

    def finish_build(self, generation: int) -> bool:
        name = self._name(generation)
        assert name is not None
        record = self._generations[name]
        shard = self._shards.get(name)
        try:
            if shard is not None and not shard.finished():
                return False
        except BaseException:
            record.pop("sealed", None)
            self._write_pointer()
            raise
        if record.pop("sealed", False):
            record["indexed"] = True
        self._write_pointer()
        return True

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
            shard.close()
        self._shards.clear()


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


def stored_points(
    root: Path, alias: str, generation: int | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Every point of a generation (the serving one) with its payload, read from the storage
    itself (for audits: the process that serves it must have stopped, one opener per
    directory)."""
    store = EdgeStore(root, alias)
    try:
        shard = store._shard_of(generation)
        return [] if shard is None else shard.call(Shard.points)
    finally:
        store.close()
