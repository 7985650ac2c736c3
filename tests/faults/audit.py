"""Progress and outcome of a fault run: wait until a slice is under way or until the pipeline
has settled, hold statuses and points against the expectation, write `reports/faults.json`.

Lost points are expected ids the store lacks; duplicated points are the tenant's points that are
not expected (a stale version, a repeat under another id). Point ids are deterministic, so the
two together say exactly whether the index holds each document once.
"""

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from contracts.topics import CHUNKS_READY, DOCUMENT_UPLOADED, VECTORS_READY
from ragbus_ops.eval.datasets import Document

from .cluster import Cluster, StoredPoint
from .corpus import REPO, Slice

REPORT = REPO / "reports" / "faults.json"
FINAL = {"INDEXED", "FAILED", "DELETED"}
# Every stage's consumer group and the topic it consumes.
STAGE_GROUPS = {
    "chunker": ("ragbus-chunker", DOCUMENT_UPLOADED),
    "embedder": ("ragbus-embedder", CHUNKS_READY),
    "indexer": ("ragbus-indexer", VECTORS_READY),
}
SETTLE_TIMEOUT_S = 900.0
QUIET_S = 60.0
# A document has passed a service once its status is one of these.
PASSED = {
    "chunker": {"EMBEDDING", "INDEXING", "INDEXED"},
    "embedder": {"INDEXING", "INDEXED"},
    "indexer": {"INDEXED"},
    "status": {"INDEXED"},
}


@dataclass(frozen=True)
class Outcome:
    """One entry of reports/faults.json."""

    fault: str
    documents: int
    expected_points: int
    actual_points: int
    lost: int
    duplicated: int
    detail: dict[str, Any] = field(default_factory=dict)


class FaultReport:
    """The session's outcomes, rewritten to `path` each time some are added."""

    def __init__(self, path: Path = REPORT) -> None:
        self.path = path
        self.outcomes: list[Outcome] = []

    def add(self, outcomes: Sequence[Outcome]) -> None:
        self.outcomes += outcomes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entries = [asdict(outcome) for outcome in self.outcomes]
        self.path.write_bytes(orjson.dumps(entries, option=orjson.OPT_INDENT_2) + b"\n")


def upload(cluster: Cluster, slice_: Slice, documents: Sequence[Document]) -> None:
    """Upload some of the slice's documents; the ingest must name each one (id and version)
    as the expectation does, or the audit would compare different things."""
    accepted = cluster.upload(slice_.tenant, documents)
    named = {(a["document_id"], a["version"]) for a in accepted}
    expected = {(e.document_id, e.version) for e in slice_.expected.values()}
    assert len(named) == len(documents) and named <= expected, sorted(named - expected)[:3]


def wait_passed(cluster: Cluster, slice_: Slice, service: str) -> int:
    """Until a tenth of the slice has passed `service`, so it is at work on the slice; how many
    had passed (by the status service, which may trail the service a little)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        records = cluster.statuses(slice_.tenant)
        passed = sum(
            1 for d in slice_.expected if records.get(d, {}).get("state") in PASSED[service]
        )
        if passed >= len(slice_.expected) // 10:
            return passed
        assert time.monotonic() < deadline, f"{slice_.fault}: {passed} passed {service}"
        time.sleep(0.2)


def wait_settled(
    cluster: Cluster, slices: Sequence[Slice], timeout: float = SETTLE_TIMEOUT_S
) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, int]]:
    """Each slice's status records (by tenant, then document id) and each stage group's lag,
    once every document is in a final state of its expected version and no stage has anything
    left to consume (no redelivery could still write). Also returned, for the checks to name
    what is stuck: when the stages have drained and no status has changed for `QUIET_S`
    (nothing is left that could move a document on), or when `timeout` runs out."""
    deadline = time.monotonic() + timeout
    previous: dict[str, dict[str, dict[str, Any]]] = {}
    changed = time.monotonic()
    while True:
        records = {s.tenant: cluster.statuses(s.tenant) for s in slices}
        lags = {stage: cluster.lag(*group) for stage, group in STAGE_GROUPS.items()}
        final = all(
            _final(records[s.tenant].get(document_id), expected.version)
            for s in slices
            for document_id, expected in s.expected.items()
        )
        if records != previous:
            previous, changed = records, time.monotonic()
        quiet = time.monotonic() - changed > QUIET_S
        if ((final or quiet) and not any(lags.values())) or time.monotonic() > deadline:
            return records, lags
        time.sleep(1.0)


def _final(record: dict[str, Any] | None, version: str) -> bool:
    return record is not None and record["state"] in FINAL and record["version"] == version


def status_problems(slice_: Slice, records: dict[str, dict[str, Any]]) -> list[str]:
    """What is wrong with the slice's statuses: each document must be INDEXED, at its version,
    with `chunks == indexed_chunks ==` its expected chunk count."""
    problems = []
    for document_id, expected in slice_.expected.items():
        record = records.get(document_id)
        wanted = (
            "INDEXED",
            expected.version,
            len(expected.chunk_ids),
            len(expected.chunk_ids),
        )
        got = record and (
            record["state"],
            record["version"],
            record["chunks"],
            record["indexed_chunks"],
        )
        if got != wanted:
            reason = record and record["reason"]
            problems.append(f"{slice_.fault}: {document_id} is {got}, not {wanted} ({reason})")
    return problems


@dataclass(frozen=True)
class Settled:
    """Everything the checks look at, read once the pipeline has settled."""

    records: dict[str, dict[str, dict[str, Any]]]  # status records by tenant and document id
    lags: dict[str, int]  # by stage
    served: dict[str, dict[str, Any]]  # GET /v1/index by tenant
    points: list[StoredPoint]  # every point in the store
    dead_letters: list[dict[str, Any]]
    seconds: float  # from `started` until settled


def settle(cluster: Cluster, slices: Sequence[Slice], started: float) -> Settled:
    """Wait until every document is final and every stage has drained, read what the API
    serves, then stop the indexer (SIGTERM) and read every point from the store itself."""
    records, lags = wait_settled(cluster, slices)
    seconds = time.monotonic() - started
    served = {s.tenant: cluster.index_info(s.tenant) for s in slices}
    assert cluster.terminate("indexer") == 0
    return Settled(records, lags, served, cluster.stored_points(), cluster.dead_letters(), seconds)


def audit(slice_: Slice, points: Sequence[StoredPoint], detail: dict[str, Any]) -> Outcome:
    """The slice's outcome from every point in the store (its tenant's are its own)."""
    mine = [point for point in points if point.tenant_id == slice_.tenant]
    expected = {i for e in slice_.expected.values() for i in e.chunk_ids}
    present = {point.id for point in mine} & expected
    hidden = sum(1 for point in mine if point.id in expected and not point.live)
    return Outcome(
        fault=slice_.fault,
        documents=len(slice_.expected),
        expected_points=len(expected),
        actual_points=len(mine),
        lost=len(expected - present),
        duplicated=len(mine) - len(present),
        detail={**detail, "not_live": hidden},
    )


def conclude(
    settled: Settled,
    slices: Sequence[Slice],
    details: dict[str, dict[str, Any]],
    report: FaultReport,
) -> None:
    """Report each slice's outcome, then hold the run to it: no point lost or duplicated,
    all live; every document INDEXED with its expected chunks; the API serving the same
    counts; nothing left to consume, nothing dead-lettered, no point outside the slices."""
    run_s = round(settled.seconds, 1)
    outcomes = [audit(s, settled.points, {**details[s.fault], "run_s": run_s}) for s in slices]
    report.add(outcomes)
    assert [(o.fault, o.lost, o.duplicated) for o in outcomes] == [(s.fault, 0, 0) for s in slices]
    assert [o.detail["not_live"] for o in outcomes] == [0] * len(slices)
    problems = [p for s in slices for p in status_problems(s, settled.records[s.tenant])]
    assert problems == [], f"{len(problems)} documents: {problems[:5]}"
    served = {tenant: (i["points"], i["documents"]) for tenant, i in settled.served.items()}
    assert served == {s.tenant: (s.expected_points, len(s.expected)) for s in slices}
    assert settled.lags == dict.fromkeys(STAGE_GROUPS, 0)
    assert not settled.dead_letters, settled.dead_letters[:3]
    assert len(settled.points) == sum(s.expected_points for s in slices)
