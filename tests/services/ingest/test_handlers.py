"""The ingest stage's rules, which live in its routes: an upload reports RECEIVED and publishes
`document.uploaded`, an unchanged re-upload publishes nothing, a delete publishes a tombstone.
Through the real app with FastStream's in-memory TestKafkaBroker (no real broker)."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from pydantic import TypeAdapter

from contracts.events import (
    DocumentDeleted,
    DocumentState,
    DocumentUploaded,
    StatusUpdate,
    UploadOrDelete,
)
from contracts.ids import document_id, sha256_of, upload_version
from contracts.topics import DOCUMENT_STATUS, DOCUMENT_UPLOADED
from ragbus.bus import encode
from services.ingest.main import create_app
from services.ingest.settings import IngestSettings
from tests.events import kinds

pytestmark = pytest.mark.unit

KEYS = {"key-acme": "acme", "key-globex": "globex"}
UPLOADS: TypeAdapter[Any] = TypeAdapter(UploadOrDelete)


class Ingest:
    """A client of the ingest app, and what the app published, in order, as (topic, event)."""

    def __init__(self, client: httpx.AsyncClient, broker: Any, log: list[tuple[str, Any]]):
        self.client = client
        self.broker = broker
        self.log = log

    async def upload_text(self, text: str, key: str = "key-acme", **fields: Any) -> httpx.Response:
        body = {"documents": [{"text": text, **fields}]}
        return await self.client.post("/v1/documents", json=body, headers=auth(key))

    def published(self) -> list[tuple[str, str, str]]:
        """The log as (topic, document, what): the status state or the event type."""
        return kinds(self.log)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def ingest(tmp_path: Path) -> AsyncIterator[Ingest]:
    settings = IngestSettings(
        data_dir=tmp_path, api_keys=",".join(f"{k}:{t}" for k, t in KEYS.items())
    )
    app = create_app(settings=settings)
    broker = app.state.broker
    log: list[tuple[str, Any]] = []

    @broker.subscriber(DOCUMENT_STATUS)
    async def on_status(body: dict) -> None:
        log.append((DOCUMENT_STATUS, StatusUpdate.model_validate(body)))

    @broker.subscriber(DOCUMENT_UPLOADED)
    async def on_uploaded(body: dict) -> None:
        log.append((DOCUMENT_UPLOADED, UPLOADS.validate_python(body)))

    async with TestKafkaBroker(broker):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            yield Ingest(client, broker, log)


async def test_an_upload_reports_received_before_it_publishes_the_document(ingest, tmp_path):
    response = await ingest.upload_text("Giraffes sleep two hours a day.", title="giraffes")

    assert response.status_code == 202
    (accepted,) = response.json()["documents"]
    doc = document_id("acme", "giraffes.txt")
    assert accepted == {
        "document_id": doc,
        "filename": "giraffes.txt",
        "version": upload_version(sha256_of(b"Giraffes sleep two hours a day."), "giraffes", {}),
        "status": "RECEIVED",
        "unchanged": False,
    }
    assert ingest.published() == [
        (DOCUMENT_STATUS, doc, "RECEIVED"),
        (DOCUMENT_UPLOADED, doc, "DocumentUploaded"),
    ]
    status, event = ingest.log[0][1], ingest.log[1][1]
    assert (status.stage, status.tenant_id, status.version, status.filename) == (
        "ingest",
        "acme",
        accepted["version"],
        "giraffes.txt",
    )
    assert isinstance(event, DocumentUploaded)
    assert (event.tenant_id, event.version, event.title) == (
        "acme",
        accepted["version"],
        "giraffes",
    )
    assert status.trace_id == event.trace_id
    # The bytes are in the blob store the event names.
    assert event.blob_uri.startswith((tmp_path / "blobs").as_uri())
    assert (
        Path(event.blob_uri.removeprefix("file://")).read_bytes()
        == b"Giraffes sleep two hours a day."
    )


async def test_several_files_are_all_reported_before_any_is_published(ingest):
    files = [
        ("files", ("a.md", b"# A\n\nalpha", "text/markdown")),
        ("files", ("b.txt", b"beta", "text/plain")),
    ]
    response = await ingest.client.post(
        "/v1/documents",
        files=files,
        data={"metadata": '{"team": "docs"}'},
        headers=auth("key-acme"),
    )

    assert response.status_code == 202
    a, b = document_id("acme", "a.md"), document_id("acme", "b.txt")
    assert ingest.published() == [
        (DOCUMENT_STATUS, a, "RECEIVED"),
        (DOCUMENT_STATUS, b, "RECEIVED"),
        (DOCUMENT_UPLOADED, a, "DocumentUploaded"),
        (DOCUMENT_UPLOADED, b, "DocumentUploaded"),
    ]
    assert all(event.metadata == {"team": "docs"} for _, event in ingest.log[2:])


async def test_an_unchanged_re_upload_publishes_nothing(ingest):
    first = await ingest.upload_text("Kafka is a log.", title="kafka")
    published = len(ingest.log)

    again = await ingest.upload_text("Kafka is a log.", title="kafka")

    assert again.status_code == 202
    (accepted,) = again.json()["documents"]
    assert accepted["unchanged"] is True
    assert accepted["version"] == first.json()["documents"][0]["version"]
    assert len(ingest.log) == published


@pytest.mark.parametrize(
    "change",
    [
        {"text": "Kafka is a distributed log."},
        {"metadata": {"team": "platform"}},
    ],
    ids=["content", "metadata"],
)
async def test_a_changed_re_upload_is_a_new_version_and_published(ingest, change):
    original = {"text": "Kafka is a log.", "title": "kafka"}
    first = await ingest.upload_text(**original)

    again = await ingest.upload_text(**{**original, **change})

    (accepted,) = again.json()["documents"]
    assert accepted["unchanged"] is False
    assert accepted["version"] != first.json()["documents"][0]["version"]
    assert [what for _, _, what in ingest.published()] == [
        "RECEIVED",
        "DocumentUploaded",
        "RECEIVED",
        "DocumentUploaded",
    ]


async def test_a_re_upload_of_a_failed_document_is_published_again(ingest):
    first = await ingest.upload_text("Kafka is a log.", title="kafka")
    (accepted,) = first.json()["documents"]
    failed = StatusUpdate(
        document_id=accepted["document_id"],
        tenant_id="acme",
        stage="chunker",
        state=DocumentState.FAILED,
        version=accepted["version"],
        reason="chunker: no text",
    )
    await ingest.broker.publish(encode(failed), DOCUMENT_STATUS, key=failed.document_id.encode())
    published = len(ingest.log)

    again = await ingest.upload_text("Kafka is a log.", title="kafka")

    assert again.json()["documents"][0]["unchanged"] is False
    assert [what for _, _, what in ingest.published()[published:]] == [
        "RECEIVED",
        "DocumentUploaded",
    ]


async def test_a_delete_publishes_a_tombstone_on_document_uploaded(ingest):
    uploaded = await ingest.upload_text("Kafka is a log.", title="kafka")
    doc = uploaded.json()["documents"][0]["document_id"]
    published = len(ingest.log)

    response = await ingest.client.delete(f"/v1/documents/{doc}", headers=auth("key-acme"))

    assert response.status_code == 202
    assert response.json() == {"document_id": doc, "filename": "kafka.txt", "status": "RECEIVED"}
    ((topic, tombstone),) = ingest.log[published:]
    assert topic == DOCUMENT_UPLOADED and isinstance(tombstone, DocumentDeleted)
    assert (tombstone.document_id, tombstone.tenant_id) == (doc, "acme")


@pytest.mark.parametrize(
    ("key", "target"),
    [("key-acme", "no-such-document"), ("key-globex", "acme's")],
    ids=["unknown", "another-tenants"],
)
async def test_a_delete_of_a_document_the_tenant_does_not_have_is_404(ingest, key, target):
    uploaded = await ingest.upload_text("Kafka is a log.", title="kafka")
    doc = uploaded.json()["documents"][0]["document_id"] if target == "acme's" else target
    published = len(ingest.log)

    response = await ingest.client.delete(f"/v1/documents/{doc}", headers=auth(key))

    assert response.status_code == 404
    assert len(ingest.log) == published
