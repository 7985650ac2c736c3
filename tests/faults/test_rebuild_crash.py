"""kill -9 of the indexer while it writes a rebuild's generation: after its restart the rebuild
completes, and the new generation holds exactly the points its chunking gives, all live: none
lost, none duplicated. The points expected are computed from the documents with the chunker's
own transform and the plan's chunking, never read back from a running ragbus."""

import time
from typing import Any

import httpx
import pytest

from .audit import audit, wait_settled
from .cluster import Cluster
from .corpus import make_slice

pytestmark = [pytest.mark.faults, pytest.mark.timeout(1800)]

SERVICES = ("ingest", "chunker", "embedder", "indexer", "status")
DOCUMENTS = 150
CHUNKING = {"max_tokens": 64, "overlap_tokens": 8}
GATE_TIMEOUT_S = 900.0


def operator(cluster: Cluster, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method,
        f"{cluster.url('indexer')}{path}",
        headers=cluster.auth("ops"),
        timeout=120,
        **kwargs,
    )


def built(cluster: Cluster, generation: int) -> int:
    """Documents live in `generation` (0 while the indexer is down)."""
    try:
        listing = operator(cluster, "GET", "/v1/index/generations").json()
    except httpx.TransportError:
        return 0
    return next((g["documents"] for g in listing if g["number"] == generation), 0)


def test_kill_9_of_the_indexer_during_a_rebuild(make_cluster, squad_documents, fault_report):
    cluster = make_cluster(["ops", "acme"])
    for name in SERVICES:
        cluster.start(name, RAGBUS_OPERATOR_TENANTS="ops")
    cluster.wait_healthy()
    documents = squad_documents[:DOCUMENTS]
    first = make_slice("generation 1", "acme", documents)
    cluster.upload("acme", documents)
    wait_settled(cluster, [first])

    rebuilt = make_slice("kill -9 indexer during a rebuild", "acme", documents, **CHUNKING)
    plan = {"chunk_tokens": CHUNKING["max_tokens"], "overlap": CHUNKING["overlap_tokens"]}
    response = operator(cluster, "POST", "/v1/index/generations", json=plan)
    assert response.status_code == 201, response.text
    generation = response.json()["number"]
    while not DOCUMENTS // 10 <= (done := built(cluster, generation)) < DOCUMENTS // 2:
        assert done < DOCUMENTS // 2, "the rebuild ran too fast to be cut in the middle"
        time.sleep(0.2)
    cluster.kill("indexer")
    cluster.restart("indexer")

    deadline = time.monotonic() + GATE_TIMEOUT_S
    while not (gate := operator(cluster, "GET", f"/v1/index/generations/{generation}/gate").json())[
        "open"
    ]:
        assert time.monotonic() < deadline, gate
        time.sleep(2)
    promoted = operator(cluster, "POST", f"/v1/index/generations/{generation}/promote")
    assert promoted.status_code == 200, promoted.text
    assert cluster.terminate("indexer") == 0
    points = cluster.stored_points(generation=generation)
    outcome = audit(rebuilt, points, {"killed_at_documents": done})
    fault_report.add([outcome])
    assert (outcome.lost, outcome.duplicated, outcome.detail["not_live"]) == (0, 0, 0)
    assert outcome.actual_points == rebuilt.expected_points > first.expected_points
    assert cluster.dead_letters() == []
