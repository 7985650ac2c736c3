"""Hundreds of bad inputs through the real services: each one ends FAILED with its reason and in
a dead-letter topic, no service exits or stalls, and good documents keep flowing meanwhile.

Files go in two ways: through the upload API (the door refuses some with a 4xx: those are
counted apart, not as tried) and straight onto `document.uploaded` with their bytes in the blob
store, which only the chunker can refuse. Raw records (not JSON, wrong schema, unknown schema
version, missing ids, bad vectors...) go straight onto every topic a stage consumes. The corpus
is generated in `bad_inputs.py`; the counts go to reports/bad-inputs.json.
"""

import asyncio
import hashlib
import json
import time
import uuid
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from contracts.topics import (
    CONSUMED,
    DOCUMENT_UPLOADED,
    INDEX_PROMOTED,
    MAX_MESSAGE_BYTES,
    dlq,
)
from ragbus.adapters.blobs import BlobStore
from ragbus.bus import MAX_KEY_CHARS
from services.chunker.settings import ChunkerSettings
from services.ingest.settings import IngestSettings
from tests.bus import kafka_options

from .bad_inputs import (
    TENANT,
    FileCase,
    RecordCase,
    docx_file,
    file_cases,
    follower,
    hard_to_letter_cases,
    promoted_junk,
    record_cases,
    seeded_file_cases,
    text_pdf,
    tolerated_files,
)
from .conftest import SHARED_DATA, Stack
from .helpers import upload, wait_final

pytestmark = pytest.mark.e2e

RUN = uuid.uuid4().hex[:8]
REPORT = Path(__file__).resolve().parents[2] / "reports" / "bad-inputs.json"
SERVICES = ("ingest", "chunker", "embedder", "indexer", "query", "status")
DEADLINE_S = 600.0


@dataclass
class Tried:
    """One delivered case: `key` finds its dead letter, `document_id` its FAILED status."""

    path: str  # "api", "bus", or the topic a raw record went to
    category: str
    key: str
    reason: str
    document_id: str | None
    rejected: str | None = None  # the API's answer, when the door refused the file


def test_bad_inputs_fail_with_a_reason_and_nothing_stalls(stack: Stack) -> None:
    started = time.monotonic()
    bootstrap = stack.env["RAGBUS_KAFKA_BOOTSTRAP"]
    invalid_before = _invalid_promotions(stack)
    # Indexed first: the index then exists, so a wrong-dimension vector cannot make it.
    good = _upload_good(stack, "before")
    wait_final(stack, good, timeout=DEADLINE_S)
    tried: list[Tried] = []
    crashed: dict[str, list[str]] = {}

    cases = file_cases()
    tried += _through_the_api(stack, cases)
    crashed["api"] = _exited(stack)
    good += _upload_good(stack, "between", with_tolerated=True)
    tried += asyncio.run(_onto_the_bus(stack, [*cases, *_seeded_cases()]))
    crashed["bus"] = _exited(stack)
    records = record_cases(RUN)
    tried += asyncio.run(_publish_records(bootstrap, records))
    junk = promoted_junk()
    promotions = [(INDEX_PROMOTED, f"bad-{RUN}-promoted-{n}", v) for n, v in enumerate(junk)]
    asyncio.run(_send(bootstrap, promotions))
    crashed.update(dict.fromkeys({record.topic for record in records}, _exited(stack)))
    good += _upload_good(stack, "after") + asyncio.run(_good_onto_the_bus(stack))

    named = {t.document_id for t in tried if t.document_id and not t.rejected}
    final = wait_final(stack, [*good, *named], timeout=DEADLINE_S)
    keys = {_letter_key(t.key) for t in tried if not t.rejected}
    letters = asyncio.run(_dead_letters(bootstrap, keys))

    not_indexed = {d: final[d] for d in good if final[d]["state"] != "INDEXED"}
    assert not not_indexed, f"good documents did not reach INDEXED: {not_indexed}"
    outcomes = [_outcome(t, final, letters) for t in tried]
    wrong = [(t, problem) for t, (_, _, problem) in zip(tried, outcomes, strict=True) if problem]
    assert not wrong, f"{len(wrong)} cases not accounted for as expected: {wrong[:10]}"
    assert _exited(stack) == [], "a service process exited"
    for service in SERVICES:
        assert httpx.get(f"{stack.urls[service]}/healthz", timeout=10).status_code == 200
    invalid_promotions = _wait_invalid_promotions(stack, invalid_before + len(junk))
    assert invalid_promotions - invalid_before >= len(junk)

    report = _report(tried, outcomes, crashed, time.monotonic() - started)
    indexed = sum(final[document_id]["state"] == "INDEXED" for document_id in good)
    report["good_documents"] = {"uploaded": len(good), "indexed": indexed}
    report["index_promoted"] = {
        "published": len(junk),
        "counted_invalid_by_query": invalid_promotions - invalid_before,
    }
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    assert report["tried"] >= 200


def test_a_record_hard_to_dead_letter_does_not_stall_its_partition(stack: Stack) -> None:
    """Each record is followed on its partition (same key) by an event naming a document: the
    follower ends FAILED only if the stage got past the record. An oversized record's letter
    keeps the beginning of it, its size and its digest."""
    bootstrap = stack.env["RAGBUS_KAFKA_BOOTSTRAP"]
    cases = hard_to_letter_cases(RUN)
    followers = [f"bad-{RUN}-follower-{number}" for number in range(len(cases))]
    messages = []
    for case, document_id in zip(cases, followers, strict=True):
        messages += [(case.topic, case.key, case.value)]
        messages += [(case.topic, case.key, follower(case.topic, document_id))]
    asyncio.run(_send(bootstrap, messages))
    final = wait_final(stack, followers, timeout=DEADLINE_S)
    assert {record["state"] for record in final.values()} == {"FAILED"}
    letters = asyncio.run(_dead_letters(bootstrap, {_letter_key(case.key) for case in cases}))
    for case, document_id in zip(cases, followers, strict=True):
        # The follower's own letter keeps the same key; it names the follower's document.
        (letter, *_) = [
            letter
            for letter in letters[_letter_key(case.key)]
            if letter["document_id"] != document_id
        ]
        value = case.value or b""
        if len(value) > MAX_MESSAGE_BYTES // 2:
            assert letter["payload_truncated"], case.topic
            assert letter["payload_bytes"] == len(value)
            assert letter["payload_sha256"] == hashlib.sha256(value).hexdigest()
    assert _exited(stack) == []


# --------------------------------------------------------------------------- good documents


def _upload_good(stack: Stack, label: str, with_tolerated: bool = False) -> list[str]:
    """A few readable documents of every format (and, once, text in odd encodings)."""
    topic = {"before": "beekeeping", "between": "sourdough baking", "after": "glacier hiking"}
    subject = topic[label]
    files = [
        ("notes.md", f"# {subject}\n\nA short guide to {subject} for beginners.".encode()),
        ("notes.txt", f"Plain notes on {subject}: start small and keep a log.".encode()),
        ("page.html", f"<h1>{subject}</h1><p>Tips on {subject} for the weekend.</p>".encode()),
        ("report.docx", docx_file([f"A report on {subject}.", "Everything went to plan."])),
        ("leaflet.pdf", text_pdf([f"A leaflet about {subject}.", "Ask at the front desk."])),
    ]
    if with_tolerated:
        files += tolerated_files()
    named = [(f"bad-inputs-{RUN}/good-{label}/{name}", data) for name, data in files]
    return [document["document_id"] for document in upload(stack, named)]


async def _good_onto_the_bus(stack: Stack) -> list[str]:
    store = BlobStore(stack.data_dir / "blobs")
    uri, digest = store.put(b"Glacier crevasses open in summer.", TENANT)
    document_id = f"bad-{RUN}-good-on-the-bus"
    event = _uploaded(document_id, uri, "good-on-the-bus.txt", digest)
    await _send(stack.env["RAGBUS_KAFKA_BOOTSTRAP"], [(DOCUMENT_UPLOADED, document_id, event)])
    return [document_id]


# --------------------------------------------------------------------------- delivery


def _seeded_cases() -> list[FileCase]:
    formats = SHARED_DATA / "formats"
    if not formats.is_dir():
        warnings.warn(f"{formats} not found: the variants of real files are left out", stacklevel=1)
        return []
    return seeded_file_cases(formats)


def _through_the_api(stack: Stack, cases: Sequence[FileCase]) -> list[Tried]:
    """Each file in a request of its own, so a refusal at the door concerns that file only."""
    limit = IngestSettings.model_fields["max_upload_bytes"].default
    too_big = FileCase("oversized", "too-big.txt", bytes(limit + 1), "over the")
    tried = []
    for number, case in enumerate([*cases, too_big]):
        name = f"bad-inputs-{RUN}/api/{number:03d}-{case.name}"
        response = httpx.post(
            f"{stack.urls['ingest']}/v1/documents",
            files=[("files", (name, case.data, case.content_type or "application/octet-stream"))],
            timeout=120,
        )
        assert response.status_code in (202, 400, 413, 415, 422), response.text
        if response.status_code == 202:
            (document,) = response.json()["documents"]
            document_id = document["document_id"]
            tried.append(Tried("api", case.category, document_id, case.reason, document_id))
        else:
            answer = f"{response.status_code}: {response.json()['detail']}"
            tried.append(Tried("api", case.category, name, case.reason, None, rejected=answer))
    return tried


def _uploaded(
    document_id: str, uri: str, filename: str, sha256: str | None = None, **fields: Any
) -> bytes:
    event = {
        "schema_version": "1.0",
        "event_id": uuid.uuid4().hex,
        "document_id": document_id,
        "tenant_id": TENANT,
        "trace_id": uuid.uuid4().hex,
        "blob_uri": uri,
        "filename": filename,
        "sha256": sha256,
        **fields,
    }
    return orjson.dumps(event)


async def _onto_the_bus(stack: Stack, cases: Sequence[FileCase]) -> list[Tried]:
    """Bytes into the blob store, events straight onto the topic: past the door's checks."""
    store = BlobStore(stack.data_dir / "blobs")
    tried, messages = [], []
    for number, case in enumerate(cases):
        uri, digest = store.put(case.data, TENANT)
        document_id = f"bad-{RUN}-file-{number:03d}"
        event = _uploaded(
            document_id,
            uri,
            f"bad-inputs/{case.name}",
            digest,
            content_type=case.content_type,
            size_bytes=len(case.data),
        )
        messages.append((DOCUMENT_UPLOADED, document_id, event))
        tried.append(Tried("bus", case.category, document_id, case.reason, document_id))
    for number, (category, uri, reason, sha256) in enumerate(_blob_problems(store)):
        document_id = f"bad-{RUN}-blob-{number:02d}"
        event = _uploaded(document_id, uri, f"bad-inputs/blob-{number}.txt", sha256)
        messages.append((DOCUMENT_UPLOADED, document_id, event))
        tried.append(Tried("bus", category, document_id, reason, document_id))
    await _send(stack.env["RAGBUS_KAFKA_BOOTSTRAP"], messages)
    return tried


def _blob_problems(store: BlobStore) -> list[tuple[str, str, str, str | None]]:
    """(category, blob URI, reason, sha256) of events whose blob cannot be read as named."""
    oversized = store.root / f"oversized-{RUN}"
    with oversized.open("wb") as handle:  # sparse: no disk is used
        handle.truncate(ChunkerSettings.model_fields["max_blob_bytes"].default + 1)
    uri, _ = store.put(b"Content whose digest the event misstates.", TENANT)
    theirs, _ = store.put(b"Another tenant's notes.", f"not-{TENANT}")
    return [
        ("blob-uri", theirs, "stored by another tenant", None),
        ("blob-uri", (store.root / f"missing-{RUN}").as_uri(), "does not exist", None),
        ("blob-uri", "file:///etc/hostname", "outside the blob store", None),
        ("blob-uri", f"{store.root.as_uri()}/{'../' * 30}escape", "outside the blob store", None),
        ("blob-uri", "s3://bucket/report.txt", "unsupported blob URI scheme", None),
        ("blob-uri", "https://example.com/report.txt", "unsupported blob URI scheme", None),
        ("blob-uri", "not a uri at all", "unsupported blob URI scheme", None),
        ("blob-uri", f"file://elsewhere{store.root}/x", "names another host", None),
        ("blob-uri", store.root.as_uri(), "is a directory", None),
        ("oversized", oversized.as_uri(), "over the", None),
        ("sha-mismatch", uri, "does not match", "0" * 64),
    ]


async def _publish_records(bootstrap: str, records: Sequence[RecordCase]) -> list[Tried]:
    await _send(bootstrap, [(record.topic, record.key, record.value) for record in records])
    return [
        Tried(record.topic, record.category, record.key, record.error, record.document_id)
        for record in records
    ]


async def _send(bootstrap: str, messages: Sequence[tuple[str, str, bytes | None]]) -> None:
    """Plain aiokafka, as a foreign producer would: bytes as they are, None as a tombstone."""
    producer = AIOKafkaProducer(
        **kafka_options(bootstrap), acks="all", max_request_size=MAX_MESSAGE_BYTES
    )
    await producer.start()
    try:
        sent = [
            await producer.send(topic, value, key=key.encode()) for topic, key, value in messages
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


# --------------------------------------------------------------------------- what became of them


async def _dead_letters(bootstrap: str, keys: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Every letter in the DLQ topics, by the key of the record it keeps, once `keys` are all
    there (or at the deadline)."""
    consumer = AIOKafkaConsumer(
        *(dlq(topic) for topic in CONSUMED),
        **kafka_options(bootstrap),
        auto_offset_reset="earliest",
        group_id=None,
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
        fetch_max_bytes=4 * MAX_MESSAGE_BYTES,
    )
    letters: dict[str, list[dict[str, Any]]] = defaultdict(list)
    deadline = time.monotonic() + 240
    await consumer.start()
    try:
        while not keys <= letters.keys() and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    letter = orjson.loads(record.value or b"{}")
                    letters[letter.get("key") or ""].append(letter)
    finally:
        await consumer.stop()
    return letters


def _outcome(
    tried: Tried, final: dict[str, dict[str, Any]], letters: dict[str, list[dict[str, Any]]]
) -> tuple[bool, bool, str | None]:
    """(FAILED with the reason, dead-lettered with the reason, what is wrong or None)."""
    if tried.rejected:
        return False, False, None
    record = final.get(tried.document_id or "")
    failed = bool(record and record["state"] == "FAILED" and tried.reason in record["reason"])
    kept = letters.get(_letter_key(tried.key), [])
    lettered = any(tried.reason in letter["error"] for letter in kept)
    if not lettered:
        return failed, lettered, f"no dead letter with {tried.reason!r}: {kept}"
    if tried.document_id and not failed:
        return failed, lettered, f"not FAILED with {tried.reason!r}: {record}"
    return failed, lettered, None


def _letter_key(key: str) -> str:
    """The key as a dead letter keeps it (bounded)."""
    return key[:MAX_KEY_CHARS]


def _exited(stack: Stack) -> list[str]:
    return [
        "+".join(group) for group, process in stack.processes.items() if process.poll() is not None
    ]


def _invalid_promotions(stack: Stack) -> float:
    """The query service's count of records it could not read on `index.promoted`."""
    text = httpx.get(f"{stack.urls['query']}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "ragbus_messages_total"
        and sample.labels == {"stage": "query", "topic": INDEX_PROMOTED, "outcome": "invalid"}
    )


def _wait_invalid_promotions(stack: Stack, expected: float) -> float:
    deadline = time.monotonic() + 60
    while (count := _invalid_promotions(stack)) < expected and time.monotonic() < deadline:
        time.sleep(0.5)
    return count


def _report(
    tried: Sequence[Tried],
    outcomes: Sequence[tuple[bool, bool, str | None]],
    crashed: dict[str, list[str]],
    seconds: float,
) -> dict[str, Any]:
    categories: dict[str, Counter[str]] = defaultdict(Counter)
    for case, (failed, lettered, _) in zip(tried, outcomes, strict=True):
        counts = categories[f"{case.path}/{case.category}"]
        counts["rejected_at_api" if case.rejected else "tried"] += 1
        counts["failed_with_reason"] += failed
        counts["dead_lettered"] += lettered
        counts["crashes"] = len(crashed[case.path])
    fields = ("tried", "failed_with_reason", "dead_lettered", "rejected_at_api", "crashes")
    return {
        "run": RUN,
        "seconds": round(seconds, 1),
        "tried": sum(counts["tried"] for counts in categories.values()),
        "rejected_at_api": sum(counts["rejected_at_api"] for counts in categories.values()),
        "crashes": len({name for names in crashed.values() for name in names}),
        "seeded_from_shared_data": (SHARED_DATA / "formats").is_dir(),
        "api_refusals": sorted({case.rejected for case in tried if case.rejected}),
        "categories": {
            name: {field: counts[field] for field in fields}
            for name, counts in sorted(categories.items())
        },
    }
