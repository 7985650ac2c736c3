"""One generation of the embedded index: a Qdrant Edge shard served by a process of its own.

Every Edge call holds the GIL: a search (2-3 ms at 100k points), a load (70-490 ms), a close
(13-216 ms), an HNSW build (54-77 s). Run in the serving process, the searches took two thirds
of its GIL under a load of 16 clients, and a rebuild's close and reload stalled its queries by up
to 233 ms. Here each shard lives in a child process (`python -m ragbus.adapters.edge_shard`),
which builds its own HNSW graph while the others serve; the parent only waits on a socket
(`ShardProcess.call`), with its GIL free.

The child leaves when the parent goes: its socket reads EOF (a build under way finishes first).
A parent restarted meanwhile finds the shard's WAL locked and waits for it (`LOCK_WAIT_S`).
"""

import contextlib
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

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
from ragbus.ports import GenerationBusy, Hit, Point, SearchRequest
from ragbus.sparse import SparseVector as Sparse

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

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
# since the last one: closing a shard after 100k unflushed points took 888 ms; flushed every
# 5,000 points, each flush took ~50 ms and the close 115 ms.
FLUSH_EVERY = 2_000
# How long a new shard process waits for a shard's WAL lock: the process of a parent killed
# during an HNSW build holds it until the build ends (77 s at 100k points).
LOCK_WAIT_S = 180.0
PAGE = 1_000


def match(key: str, value: str | bool) -> Any:
    """An exact-match condition (typed Any: the stub's lists of conditions are invariant). A
    Python bool would be converted to the integer 1 and match nothing, silently: Edge matches a
    numpy bool as a bool."""
    matched: Any = np.bool_(value) if isinstance(value, bool) else value
    return FieldCondition(key, match=MatchValue(matched))


def shard_config(dimensions: int) -> EdgeConfig:
    """A generation's shard: the named vectors and their HNSW graphs."""
    return EdgeConfig(
        vectors={DENSE: EdgeVectorParams(size=dimensions, distance=Distance.Cosine)},
        sparse_vectors={SPARSE: EdgeSparseVectorParams(modifier=Modifier.Idf)},
        hnsw_config=HNSW,
    )


def create_shard(path: Path, dimensions: int) -> EdgeShard:
    shard = EdgeShard.create(str(path), shard_config(dimensions))
    shard.update(
        UpdateOperation.create_field_index("tenant_id", KeywordIndexParams(is_tenant=True))
    )
    for field in ("document_id", "version"):
        shard.update(UpdateOperation.create_field_index(field, PayloadSchemaType.Keyword))
    shard.update(UpdateOperation.create_field_index(LIVE, PayloadSchemaType.Bool))
    return shard


def load_shard(path: Path, dimensions: int, lock_wait_s: float) -> EdgeShard:
    """Open an existing shard, given its configuration again: opened without it, a graph built
    later had recall@5 0.962 at 100k points; with it 0.992."""
    deadline = time.monotonic() + lock_wait_s
    while True:
        try:
            return EdgeShard.load(str(path), shard_config(dimensions))
        except Exception as exc:
            if "WAL" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


class Shard:
    """The operations on one generation's shard, as the child process runs them: each takes and
    returns plain values, so it crosses the socket whole."""

    def __init__(self, shard: EdgeShard) -> None:
        self.shard = shard
        self._unflushed = 0

    def _ids(self, where: Filter) -> list[Any]:
        records, _ = self.shard.scroll(
            ScrollRequest(limit=MAX_DOCUMENT_POINTS, filter=where, with_payload=False)
        )
        return [record.id for record in records]

    def _live_version(self, document_id: str) -> tuple[str, str] | None:
        """(version, upload time) of the document's live version, if one is live."""
        records, _ = self.shard.scroll(
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

    def upsert(self, points: Sequence[Point]) -> None:
        """Write the points; the same ids overwrite. A point of a version that is already live
        (a redelivered batch) is written live, any other not live."""
        live = {
            document_id: self._live_version(document_id)
            for document_id in {point.payload["document_id"] for point in points}
        }

        def is_live(point: Point) -> bool:
            served = live[point.payload["document_id"]]
            return served is not None and served[0] == point.payload["version"]

        self.shard.update(
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
        self._unflushed += len(points)
        if self._unflushed >= FLUSH_EVERY:
            self.shard.flush()
            self._unflushed = 0

    def count(self, document_id: str, version: str | None) -> int:
        must = [match("document_id", document_id)]
        if version is not None:
            must.append(match("version", version))
        return self.shard.count(CountRequest(filter=Filter(must=must)))

    def count_matching(self, key: str, value: str | bool) -> int:
        """Points whose `key` equals `value` (the bool-filter helper at work)."""
        return self.shard.count(CountRequest(filter=Filter(must=[match(key, value)])))

    def promote(self, document_id: str, version: str) -> int | None:
        """See `EdgeStore.promote`."""
        document = match("document_id", document_id)
        mine = self._ids(Filter(must=[document, match("version", version)]))
        if not mine:
            return 0
        served = self._live_version(document_id)
        if served is not None and served[0] != version:
            records = self.shard.retrieve(list(mine[:1]), with_payload=True, with_vector=False)
            uploaded = str((records[0].payload or {}).get("uploaded_at", "")) if records else ""
            if served[1] > uploaded:
                self.shard.update(UpdateOperation.delete_points(list(mine)))
                return None
        stale = self._ids(Filter(must=[document], must_not=[match("version", version)]))
        self.shard.update(UpdateOperation.set_payload(list(mine), {LIVE: True}))
        if stale:
            self.shard.update(UpdateOperation.delete_points(list(stale)))
        return len(stale)

    def delete_document(self, document_id: str, tenant_id: str) -> int:
        where = Filter(must=[match("document_id", document_id), match("tenant_id", tenant_id)])
        removed = self.shard.count(CountRequest(filter=where))
        if removed:
            self.shard.update(UpdateOperation.delete_points_by_filter(where))
        return removed

    def search(self, request: SearchRequest) -> list[Hit]:
        """The tenant's best live chunks. The tenant filter sits on every ranking, so no other
        tenant's chunk enters a candidate list."""
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
        scored = self.shard.query(query)
        return newest_versions([Hit(str(p.id), p.score, p.payload or {}) for p in scored])

    def info(self, tenant_id: str | None) -> tuple[int, int]:
        """(points, documents) of the shard (of `tenant_id`)."""
        where = Filter(must=[match("tenant_id", tenant_id)]) if tenant_id else None
        points = self.shard.count(CountRequest(filter=where))
        if not points:
            return 0, 0
        request = FacetRequest("document_id", limit=points, exact=True, filter=where)
        return points, len(self.shard.facet(request).hits)

    def document_ids(self) -> set[str]:
        """The documents with a live version."""
        where = Filter(must=[match(LIVE, True)])
        live = self.shard.count(CountRequest(filter=where))
        if not live:
            return set()
        facet = self.shard.facet(FacetRequest("document_id", limit=live, exact=True, filter=where))
        return {str(hit.value) for hit in facet.hits}

    def sample(self, documents: int) -> list[Hit]:
        """One live point of each of up to `documents` documents."""
        records, _ = self.shard.scroll(
            ScrollRequest(
                limit=documents * SAMPLED_PER_DOCUMENT,
                filter=Filter(must=[match(LIVE, True)]),
                with_payload=True,
            )
        )
        return one_per_document(((record.id, record.payload) for record in records), documents)

    def points(self) -> list[tuple[str, dict[str, Any]]]:
        """Every point with its payload (for audits)."""
        points: list[tuple[str, dict[str, Any]]] = []
        offset = None
        while True:
            records, offset = self.shard.scroll(
                ScrollRequest(offset=offset, limit=PAGE, with_payload=True)
            )
            points += [(str(record.id), record.payload or {}) for record in records]
            if offset is None:
                return points

    def indexed_vectors(self) -> int:
        return int(self.shard.info().indexed_vectors_count)

    def optimize(self) -> None:
        """Build the HNSW graphs (the whole process is busy meanwhile, no other)."""
        self.shard.optimize()
        self.shard.flush()

    def close(self) -> None:
        self.shard.flush()
        self.shard.close()


def _sparse(vector: Sparse) -> SparseVector:
    return SparseVector(list(vector.indices), list(vector.values))


def _portable(exc: Exception) -> Exception:
    """The exception as it can cross the socket: Edge's own errors do not pickle."""
    return exc if type(exc).__module__ == "builtins" else RuntimeError(f"{exc}")


class ShardGone(ConnectionError):
    """The shard's process ended during a call (killed, or crashed): the next call starts it
    again, so callers retry this like any lost connection."""


class ShardProcess:
    """The parent's handle on one shard's process, started again if it ended. One thread at a
    time calls it (the store's runner). A call sent with `start` (a build) is answered later:
    until `finished` says so, other calls raise `GenerationBusy`."""

    def __init__(
        self, path: Path, dimensions: int, create: bool, lock_wait_s: float = LOCK_WAIT_S
    ) -> None:
        self.path = path
        self.dimensions = dimensions
        self.lock_wait_s = lock_wait_s
        self._started: str | None = None
        self._spawn("create" if create else "load")

    def _spawn(self, mode: str) -> None:
        mine, theirs = socket.socketpair()
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                __name__,
                str(theirs.fileno()),
                str(self.path),
                str(self.dimensions),
                mode,
                str(self.lock_wait_s),
            ],
            pass_fds=[theirs.fileno()],
        )
        theirs.close()
        self._connection = Connection(mine.detach())
        try:
            self._answer()
        except BaseException:
            self._process.wait()
            self._connection.close()
            raise

    @property
    def pid(self) -> int:
        return self._process.pid

    def _running(self) -> None:
        if self._started is not None:
            raise GenerationBusy(f"the shard's process is busy: {self._started}")
        if (code := self._process.poll()) is not None:
            log.warning(
                "the shard process of %s ended (exit code %s): starting it again", self.path, code
            )
            self._connection.close()
            self._spawn("load")

    def call(
        self, method: Callable[Concatenate[Shard, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `Shard.<method>` in the shard's process and return what it returned."""
        self._running()
        self._connection.send((method.__name__, args, kwargs))
        answer: T = self._answer()
        return answer

    def start(self, method: Callable[[Shard], None]) -> None:
        """Send a long call (an HNSW build) without waiting for it."""
        self._running()
        self._connection.send((method.__name__, (), {}))
        self._started = method.__name__

    def finished(self) -> bool:
        """Whether the call sent with `start` has ended (its error raised here)."""
        if self._started is None:
            return True
        if not self._connection.poll():
            return False
        self._started = None
        self._answer()
        return True

    def _answer(self) -> Any:
        try:
            failed, value = self._connection.recv()
        except (EOFError, ConnectionResetError):
            self._started = None
            raise ShardGone(
                f"the shard process of {self.path} ended (exit code {self._process.wait()})"
            ) from None
        if failed:
            raise value
        return value

    def close(self) -> None:
        """Flush and close the shard, and let its process end; a build under way is cut short
        (it starts again with the next `begin_build`)."""
        if self._started is not None:
            self._process.kill()
        else:
            try:
                self._connection.send(("close", (), {}))
                self._answer()
            except (OSError, RuntimeError):
                self._process.kill()
        self._process.wait()
        self._connection.close()


def serve(connection: Connection, shard: Shard) -> None:
    """Answer calls until the parent closes the shard or goes away."""
    try:
        while True:
            try:
                name, args, kwargs = connection.recv()
            except EOFError:
                return
            if name == "close":
                break
            try:
                connection.send((False, getattr(shard, name)(*args, **kwargs)))
            except Exception as exc:
                connection.send((True, _portable(exc)))
    finally:
        shard.close()
    connection.send((False, None))


def main(fd: int, path: str, dimensions: int, mode: str, lock_wait_s: float) -> None:
    connection = Connection(fd)
    try:
        opened = (
            create_shard(Path(path), dimensions)
            if mode == "create"
            else load_shard(Path(path), dimensions, lock_wait_s)
        )
    except Exception as exc:
        connection.send((True, _portable(exc)))
        return
    connection.send((False, None))
    # The parent may go away while an answer is on its way.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        serve(connection, Shard(opened))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
