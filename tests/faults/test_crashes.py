"""Crashes during one ingestion of 1,000 documents: kill -9 the chunker, the embedder, the indexer
and the status service in turn, each while it is working through its slice of documents, and
restart each; then kill -9 the broker and start it again on the same ports and data, with
uploads going on. Afterwards every document is INDEXED, and the index holds exactly the
expected points: none lost, none duplicated.

Each fault answers for a slice of 200 documents under a tenant of its own, uploaded just before
it; the slices overlap in the pipeline, so a fault also meets the documents still in flight
from the slices before it.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from ragbus_ops.eval.datasets import Document

from .audit import STAGE_GROUPS, conclude, settle, upload, wait_passed
from .cluster import Cluster
from .corpus import Slice, make_slice
from .groups import GroupWatcher

pytestmark = [pytest.mark.faults, pytest.mark.timeout(2400)]

SERVICES = ("ingest", "chunker", "embedder", "indexer", "status")
SLICE_SIZE = 200
# The fault, and the service it hits (None: the broker).
FAULTS = (
    ("kill -9 chunker", "chunker"),
    ("kill -9 embedder", "embedder"),
    ("kill -9 indexer", "indexer"),
    ("kill -9 status", "status"),
    ("kill -9 broker, restart on the same ports and data", None),
)
# How long the broker stays down while uploads keep coming.
BROKER_DOWN_S = 5.0


def kill_mid_batch(cluster: Cluster, service: str) -> dict[str, Any]:
    """kill -9 `service`; a stage once its group is consuming and has work in hand. What the
    group had not committed then, and how soon after that was seen it was killed."""
    if service not in STAGE_GROUPS:
        cluster.kill(service)
        return {}
    with GroupWatcher(cluster.bootstrap, *STAGE_GROUPS[service]) as watcher:
        busy = watcher.wait_busy()
        cluster.kill(service)
        after = time.monotonic() - busy.at
    return {
        "uncommitted_at_kill": sum(busy.end) - sum(busy.committed),
        "killed_after_s": round(after, 2),
    }


def crash(cluster: Cluster, slice_: Slice, service: str) -> dict[str, Any]:
    """Upload the slice and, while its upload goes on, kill -9 `service` once part of the slice
    has passed it; start it again."""
    with ThreadPoolExecutor(1) as pool:
        uploading = pool.submit(upload, cluster, slice_, slice_.documents)
        passed = wait_passed(cluster, slice_, service)
        killed = kill_mid_batch(cluster, service)
        down = time.monotonic()
        cluster.restart(service)
        back = time.monotonic()
        uploading.result()
    return {"passed_before": passed, **killed, "back_after_s": round(back - down, 1)}


def restart_broker(cluster: Cluster, slice_: Slice) -> dict[str, Any]:
    """Upload half the slice, kill -9 the broker once documents flow, upload the other half
    while it is down (the client retries), start it again; every process must ride it out."""
    half = len(slice_.documents) // 2
    first, second = slice_.documents[:half], slice_.documents[half:]
    upload(cluster, slice_, first)
    passed = wait_passed(cluster, slice_, "chunker")
    retries = cluster.upload_retries
    cluster.kill_broker()
    killed = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        uploading = pool.submit(upload, cluster, slice_, second)
        time.sleep(BROKER_DOWN_S)
        cluster.restart_broker()
        back = time.monotonic()
        uploading.result()
        uploaded = time.monotonic()
    cluster.wait_healthy()
    return {
        "passed_before": passed,
        "broker_down_s": round(back - killed, 1),
        "upload_retries": cluster.upload_retries - retries,
        "uploads_done_after_s": round(uploaded - killed, 1),
        "healthy_after_s": round(time.monotonic() - killed, 1),
    }


def test_no_document_is_lost_or_duplicated_through_crashes_and_a_broker_restart(
    make_cluster, squad_documents: list[Document], fault_report
):
    slices = [
        make_slice(fault, f"crash-{n}", squad_documents[n * SLICE_SIZE : (n + 1) * SLICE_SIZE])
        for n, (fault, _) in enumerate(FAULTS)
    ]
    assert sum(len(s.documents) for s in slices) >= 1000
    cluster = make_cluster(s.tenant for s in slices)
    for name in SERVICES:
        cluster.start(name)
    cluster.wait_healthy()

    started = time.monotonic()
    details = {}
    for slice_, (_, service) in zip(slices, FAULTS, strict=True):
        details[slice_.fault] = (
            crash(cluster, slice_, service) if service else restart_broker(cluster, slice_)
        )
    conclude(settle(cluster, slices, started), slices, details, fault_report)
