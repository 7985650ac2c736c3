"""What the end-to-end tests do through the public interfaces: HTTP and the Kafka topic."""

import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaProducer

from tests.bus import kafka_options

from .conftest import Stack

TERMINAL = {"INDEXED", "FAILED", "DELETED"}


def long_text(topic: str, paragraphs: int) -> bytes:
    """About one chunk per paragraph, every one of them naming `topic`."""
    return "\n\n".join(
        f"Section {n} about {topic}. " + f"The {topic} handbook explains step {n} in detail. " * 15
        for n in range(paragraphs)
    ).encode()


def upload(stack: Stack, files: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    response = httpx.post(
        f"{stack.urls['ingest']}/v1/documents",
        files=[("files", (name, data)) for name, data in files],
        timeout=120,
    )
    assert response.status_code == 202, response.text
    documents: list[dict[str, Any]] = response.json()["documents"]
    return documents


def status(stack: Stack, document_id: str) -> dict[str, Any] | None:
    response = httpx.get(f"{stack.urls['status']}/v1/documents/{document_id}", timeout=10)
    return response.json() if response.status_code == 200 else None


def wait_final(
    stack: Stack,
    document_ids: list[str],
    version: dict[str, str] | None = None,
    timeout: float = 600,
    since: datetime | None = None,
) -> dict[str, dict[str, Any]]:
    """Poll until every document is in a final state (of `version[id]` when given, reached
    after `since` when given)."""
    deadline = time.monotonic() + timeout
    wanted = set(document_ids)
    final: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        listing = httpx.get(
            f"{stack.urls['status']}/v1/documents", params={"limit": 100_000}, timeout=30
        ).json()["documents"]
        for record in listing:
            document_id = record["document_id"]
            expected = (version or {}).get(document_id)
            if (
                document_id in wanted
                and record["state"] in TERMINAL
                and expected in (None, record["version"])
                and (since is None or datetime.fromisoformat(record["updated_at"]) > since)
            ):
                final[document_id] = record
        if len(final) == len(wanted):
            return final
        time.sleep(1.0)
    missing = sorted(wanted - final.keys())
    raise AssertionError(f"{len(missing)} not final: {[status(stack, d) for d in missing[:5]]}")


def index_points(stack: Stack) -> int:
    points: int = httpx.get(f"{stack.urls['indexer']}/v1/index", timeout=30).json()["points"]
    return points


def query(
    stack: Stack, question: str, top_k: int = 5, mode: str = "hybrid"
) -> list[dict[str, Any]]:
    response = httpx.post(
        f"{stack.urls['query']}/v1/query",
        json={"question": question, "top_k": top_k, "generate": False, "mode": mode},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    citations: list[dict[str, Any]] = response.json()["citations"]
    return citations


async def publish_raw(
    bootstrap: str, topic: str, messages: list[tuple[str, dict[str, Any] | bytes]]
) -> None:
    """A producer that is not ragbus's code: plain aiokafka and hand-written JSON."""
    producer = AIOKafkaProducer(**kafka_options(bootstrap), acks="all")
    await producer.start()
    try:
        for key, value in messages:
            body = value if isinstance(value, bytes) else orjson.dumps(value)
            await producer.send_and_wait(topic, body, key=key.encode())
    finally:
        await producer.stop()


def external_event(document_id: str, path_uri: str, filename: str) -> dict[str, Any]:
    return {
        "schema_version": "1.0",
        "event_id": uuid.uuid4().hex,
        "document_id": document_id,
        "tenant_id": "default",
        "trace_id": uuid.uuid4().hex,
        "blob_uri": path_uri,
        "filename": filename,
    }
