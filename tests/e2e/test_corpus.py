"""The acceptance run on real data: the 30 format fixtures and Kubernetes pages through the
upload API, then a sample of them again straight onto the topic (every format fixture and every
tenth page), which must give the same outcome file by file.

`make test` takes every 20th page (27 of 545, about 300 chunks: the run is bound by the
embedding model, which some machines run at 3-6 chunks/s); `make test-corpus` sets
RAGBUS_TEST_CORPUS=full for all 545 pages (about 6,400 chunks embedded: 2-25 minutes).
"""

import asyncio
import json
import os
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from contracts.topics import DOCUMENT_UPLOADED
from ragbus_ops.client import collect_files

from .helpers import external_event, index_points, publish_raw, upload, wait_final

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]

BATCH = 25
FULL = os.environ.get("RAGBUS_TEST_CORPUS") == "full"
# Every n-th Kubernetes page goes through the API (all of them with RAGBUS_TEST_CORPUS=full).
PAGES_EVERY = 1 if FULL else 20
# Every n-th Kubernetes page also goes straight onto the topic (all the format fixtures do).
TOPIC_SAMPLE_EVERY = 10
REPORT = Path(__file__).resolve().parents[2] / "reports" / "corpus-api-run.json"


def corpus(shared_data: Path) -> list[tuple[str, Path]]:
    """Every format fixture and every `PAGES_EVERY`-th Kubernetes page."""
    files, _ = collect_files([shared_data / "k8s-docs", shared_data / "formats"])
    found = [(f.name, f.path) for f in files if f.path.name != "SOURCE.md"]
    pages = [f for f in found if f[0].startswith("k8s-docs/")]
    return [f for f in found if not f[0].startswith("k8s-docs/")] + pages[::PAGES_EVERY]


def topic_sample(files: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """Every format fixture and every `TOPIC_SAMPLE_EVERY`-th Kubernetes page."""
    pages = [f for f in files if f[0].startswith("k8s-docs/")]
    fixtures = [f for f in files if not f[0].startswith("k8s-docs/")]
    return fixtures + pages[::TOPIC_SAMPLE_EVERY]


def all_records(stack) -> list[dict]:
    body = httpx.get(f"{stack.urls['status']}/v1/documents", params={"limit": 100_000}).json()
    return body["documents"]


def test_the_corpus_through_the_api_then_straight_onto_the_topic(stack, shared_data):
    files = corpus(shared_data)
    assert len(files) >= (575 if FULL else 57)
    points_before = index_points(stack)
    chunks_before = sum(r["chunks"] or 0 for r in all_records(stack) if r["state"] == "INDEXED")
    assert points_before == chunks_before

    started = time.perf_counter()
    accepted = []
    for start in range(0, len(files), BATCH):
        batch = files[start : start + BATCH]
        accepted += upload(stack, [(name, path.read_bytes()) for name, path in batch])
    by_api = wait_final(stack, [d["document_id"] for d in accepted], timeout=1800)
    seconds = time.perf_counter() - started

    failed = [r for r in by_api.values() if r["state"] == "FAILED"]
    assert all(r["reason"] for r in failed)
    assert {r["state"] for r in by_api.values()} <= {"INDEXED", "FAILED"}
    api_chunks = {r["filename"]: r["chunks"] for r in by_api.values() if r["state"] == "INDEXED"}
    assert len(api_chunks) + len(failed) == len(files)
    assert index_points(stack) == points_before + sum(api_chunks.values())
    report = {
        "files": len(files),
        "chunks": sum(api_chunks.values()),
        "seconds": round(seconds, 1),
        "chunks_per_second": round(sum(api_chunks.values()) / seconds, 1),
        "failed": dict(Counter(r["reason"] for r in failed)),
    }
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2))

    sample = topic_sample(files)
    events = [
        (f"external:{name}", external_event(f"external:{name}", path.as_uri(), name))
        for name, path in sample
    ]
    asyncio.run(publish_raw(stack.env["RAGBUS_KAFKA_BOOTSTRAP"], DOCUMENT_UPLOADED, events))
    by_topic = wait_final(stack, [key for key, _ in events], timeout=1800)
    topic_chunks = {
        r["filename"]: r["chunks"] for r in by_topic.values() if r["state"] == "INDEXED"
    }
    sampled = {name for name, _ in sample}
    assert topic_chunks == {name: n for name, n in api_chunks.items() if name in sampled}
    assert {r["filename"] for r in by_topic.values() if r["state"] == "FAILED"} == {
        r["filename"] for r in failed if r["filename"] in sampled
    }
    indexed = sum(r["chunks"] or 0 for r in all_records(stack) if r["state"] == "INDEXED")
    assert index_points(stack) == indexed
