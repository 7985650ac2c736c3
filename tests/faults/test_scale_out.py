"""Scale-out mid-stream: three embedder replicas share the `ragbus-embedder` group; a fourth
joins, then one is stopped with SIGTERM (a scale-down) and another killed with kill -9 (a lost
node), each while documents flow. Every rebalance moves partitions between replicas that are
working; afterwards every document is INDEXED with exactly its expected points.

aiokafka has no cooperative (incremental) rebalancing, so the group uses the sticky assignor on
the eager protocol: each change stops the whole group for the rebalance, and partitions stay
where they were where possible. How long each change kept the group from committing work is
measured from the outside (`groups.GroupWatcher`) and reported, not asserted.
"""

import time
from typing import Any

import pytest

from ragbus_ops.eval.datasets import Document

from .audit import STAGE_GROUPS, conclude, settle, upload, wait_passed
from .cluster import Cluster
from .corpus import make_slice
from .groups import GroupWatcher, pause

pytestmark = [pytest.mark.faults, pytest.mark.timeout(2400)]

SLICE_SIZE = 200
# After the crash suite's 1,000 documents, so each suite has documents of its own.
FIRST_DOCUMENT = 1000
REPLICAS = ("embedder-1", "embedder-2", "embedder-3")
# One thread each: the replicas share the machine's cores, as pods would share a node.
REPLICA_ENV = {"RAGBUS_EMBED_THREADS": "1"}
CHANGES = (
    "scale embedders 3→4 (a replica joins)",
    "scale embedders 4→3 (SIGTERM)",
    "scale embedders 3→2 (kill -9)",
)


def change(cluster: Cluster, fault: str) -> dict[str, Any]:
    """Apply one membership change to the embedder group."""
    if fault == CHANGES[0]:
        cluster.start("embedder-4", **REPLICA_ENV)
        cluster.wait_healthy(["embedder-4"])
        return {}
    if fault == CHANGES[1]:
        return {"exit_code": cluster.terminate("embedder-1")}
    cluster.kill("embedder-2")
    return {}


def test_embedder_replicas_join_and_leave_mid_stream_without_loss_or_duplicates(
    make_cluster, squad_documents: list[Document], fault_report
):
    documents = squad_documents[FIRST_DOCUMENT:]
    slices = [
        make_slice(fault, f"scale-{n}", documents[n * SLICE_SIZE : (n + 1) * SLICE_SIZE])
        for n, fault in enumerate(CHANGES)
    ]
    cluster = make_cluster(s.tenant for s in slices)
    for name in ("ingest", "chunker", "indexer", "status"):
        cluster.start(name)
    for name in REPLICAS:
        cluster.start(name, **REPLICA_ENV)
    cluster.wait_healthy()

    started = time.monotonic()
    details: dict[str, dict[str, Any]] = {}
    changed_at: list[float] = []
    with GroupWatcher(cluster.bootstrap, *STAGE_GROUPS["embedder"]) as watcher:
        for slice_ in slices:
            upload(cluster, slice_, slice_.documents)
            passed = wait_passed(cluster, slice_, "embedder")
            changed_at.append(time.monotonic())
            details[slice_.fault] = {"passed_before": passed, **change(cluster, slice_.fault)}
        settled = settle(cluster, slices, started)
    ends = [*changed_at[1:], watcher.samples[-1].at]
    for slice_, start, end in zip(slices, changed_at, ends, strict=True):
        details[slice_.fault].update(pause(watcher.samples, start, end))
    # For comparison: the same figures with three replicas and no change.
    details[CHANGES[0]]["steady_before"] = pause(watcher.samples, started, changed_at[0])
    conclude(settled, slices, details, fault_report)
    assert details[CHANGES[1]]["exit_code"] == 0
