"""The chunker's subscriber with FastStream's in-memory test broker (a unit test of the handler;
the end-to-end tests use the real broker)."""

import orjson
import pytest
from faststream.kafka import TestKafkaBroker

from contracts.events import (
    ChunksReady,
    DeadLetter,
    DocumentDeleted,
    DocumentState,
    StatusUpdate,
)
from contracts.topics import CHUNKS_READY, DOCUMENT_STATUS, DOCUMENT_UPLOADED, dlq
from ragbus.adapters.blobs import BlobStore
from services.chunker.main import create_app
from services.chunker.settings import ChunkerSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def app(tmp_path):
    return create_app(settings=ChunkerSettings(data_dir=tmp_path))


def collect(broker, topic, model):
    seen = []

    @broker.subscriber(topic)
    async def sink(body: dict) -> None:
        seen.append(model.model_validate(body))

    return seen


def uploaded(uri, filename="a.md", **extra):
    return orjson.dumps(
        {
            "schema_version": "1.0",
            "document_id": "d1",
            "tenant_id": "t",
            "blob_uri": uri,
            "filename": filename,
            **extra,
        }
    )


async def test_a_document_becomes_chunks_and_status_updates(app, tmp_path):
    uri, _ = BlobStore(tmp_path / "blobs").put(b"# Title\n\nSome text about Kafka.", "t")
    broker = app.state.broker
    chunks = collect(broker, CHUNKS_READY, ChunksReady)
    status = collect(broker, DOCUMENT_STATUS, StatusUpdate)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(uploaded(uri), DOCUMENT_UPLOADED, key=b"d1")
    assert [c.chunks[0].text for c in chunks] == ["# Title\n\nSome text about Kafka."]
    assert [s.state for s in status] == [DocumentState.CHUNKING, DocumentState.EMBEDDING]
    assert status[-1].chunks == 1


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "invalid event"),
        (
            uploaded("file:///nowhere", schema_version="9.0"),
            "schema_version '9.0' is not supported",
        ),
        (uploaded("file://{blobs}/missing.md"), "does not exist"),
        (uploaded("file:///etc/passwd"), "outside the blob store"),
        (uploaded("s3://bucket/a.md"), "unsupported blob URI scheme"),
    ],
)
async def test_bad_messages_go_to_the_dlq_and_fail_the_document(app, tmp_path, payload, reason):
    payload = payload.replace(b"{blobs}", str(tmp_path / "blobs").encode())
    broker = app.state.broker
    letters = collect(broker, dlq(DOCUMENT_UPLOADED), DeadLetter)
    status = collect(broker, DOCUMENT_STATUS, StatusUpdate)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(payload, DOCUMENT_UPLOADED, key=b"d1")
    assert len(letters) == 1 and reason in letters[0].error
    assert letters[0].payload == payload.decode()
    assert letters[0].stage == "chunker" and letters[0].attempts == 1
    if payload != b"not json":
        assert status[-1].state is DocumentState.FAILED and reason in (status[-1].reason or "")


async def test_a_deletion_is_passed_on_in_order(app):
    broker = app.state.broker
    passed = collect(broker, CHUNKS_READY, DocumentDeleted)
    tombstone = DocumentDeleted(document_id="d1", tenant_id="t")
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(
            tombstone.model_dump_json().encode(), DOCUMENT_UPLOADED, key=b"d1"
        )
    assert passed == [tombstone]
