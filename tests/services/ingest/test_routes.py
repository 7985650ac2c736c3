"""The upload API on a real broker: limits refused before reading, deletes of unknown documents,
no upload lost to a failed publish or a delete just before it."""

import uuid

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError
from fastapi.testclient import TestClient

from contracts.events import DocumentState, StatusUpdate
from contracts.ids import document_id
from contracts.topics import DOCUMENT_UPLOADED, MAX_MESSAGE_BYTES
from ragbus.settings import DEFAULT_TENANT
from services.ingest.main import create_app
from services.ingest.settings import IngestSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def client(kafka_broker, tmp_path):
    settings = IngestSettings(
        kafka_bootstrap=kafka_broker, data_dir=tmp_path, max_request_bytes=1000
    )
    with TestClient(create_app(settings=settings)) as client:
        yield client


def test_a_body_declared_too_large_is_refused_before_it_is_read(client):
    response = client.post(
        "/v1/documents", files=[("files", ("big.txt", b"x" * 2000, "text/plain"))]
    )
    assert response.status_code == 413
    assert "RAGBUS_MAX_REQUEST_BYTES" in response.json()["detail"]


def test_a_small_upload_is_accepted(client):
    response = client.post(
        "/v1/documents", files=[("files", ("small.txt", b"a small note", "text/plain"))]
    )
    assert response.status_code == 202
    (document,) = response.json()["documents"]
    assert (document["status"], document["unchanged"]) == ("RECEIVED", False)


def test_deleting_a_document_the_tenant_does_not_have_is_a_404(client):
    response = client.delete("/v1/documents/someone-elses")
    assert response.status_code == 404


@pytest.fixture
def roomy(kafka_broker, tmp_path):
    settings = IngestSettings(kafka_bootstrap=kafka_broker, data_dir=tmp_path)
    app = create_app(settings=settings)
    with TestClient(app) as client:
        yield client, app


def upload(client: TestClient, name: str, **form: str) -> dict:
    response = client.post(
        "/v1/documents", files=[("files", (name, b"a small note", "text/plain"))], data=form
    )
    assert response.status_code == 202, response.text
    (document,) = response.json()["documents"]
    return document


def test_an_upload_that_cannot_be_published_is_failed_so_sending_it_again_processes_it(roomy):
    client, app = roomy
    bus = app.state.bus
    publish = bus.publish

    async def broker_gone(topic, events):
        if topic == DOCUMENT_UPLOADED:
            raise KafkaConnectionError("the broker went away")
        await publish(topic, events)

    bus.publish = broker_gone
    name = f"{uuid.uuid4().hex}.txt"
    response = client.post(
        "/v1/documents", files=[("files", (name, b"a small note", "text/plain"))]
    )
    assert response.status_code == 503
    assert "could not be passed on" in response.json()["detail"]
    record = app.state.board.get(DEFAULT_TENANT, document_id(DEFAULT_TENANT, name))
    assert record.state == "FAILED" and "send it again" in record.reason

    bus.publish = publish
    document = upload(client, name)
    assert (document["status"], document["unchanged"]) == ("RECEIVED", False)


def test_the_same_bytes_uploaded_right_after_a_delete_are_processed_not_unchanged(roomy):
    client, app = roomy
    name = f"{uuid.uuid4().hex}.txt"
    first = upload(client, name)
    assert upload(client, name)["unchanged"]  # on its way already
    assert client.delete(f"/v1/documents/{first['document_id']}").status_code == 202
    # The chunker, still at work on the deleted upload, reports on it after the deletion.
    late = app.state.board.get(DEFAULT_TENANT, first["document_id"])
    app.state.board.apply(
        StatusUpdate(
            document_id=first["document_id"],
            tenant_id=DEFAULT_TENANT,
            stage="chunker",
            state=DocumentState.INDEXING,
            version=late.version,
        )
    )
    again = upload(client, name)
    assert (again["status"], again["unchanged"]) == ("RECEIVED", False)


def test_metadata_that_would_make_the_event_too_large_is_a_413_before_anything_is_sent(roomy):
    client, app = roomy
    name = uuid.uuid4().hex
    document = {
        "text": "a small note",
        "title": name,
        "metadata": {"notes": "x" * MAX_MESSAGE_BYTES},
    }
    response = client.post("/v1/documents", json={"documents": [document]})
    assert response.status_code == 413
    assert "message limit" in response.json()["detail"]
    assert app.state.board.get(DEFAULT_TENANT, document_id(DEFAULT_TENANT, f"{name}.txt")) is None


def test_a_metadata_field_over_a_mebibyte_is_refused_while_it_streams(roomy):
    client, _ = roomy
    response = client.post(
        "/v1/documents",
        files=[("files", (f"{uuid.uuid4().hex}.txt", b"a note", "text/plain"))],
        data={"metadata": orjson.dumps({"notes": "x" * 2 * 1024 * 1024}).decode()},
    )
    assert response.status_code == 400 and "maximum size" in response.text


def test_a_json_body_over_its_limit_is_a_413(kafka_broker, tmp_path):
    settings = IngestSettings(kafka_bootstrap=kafka_broker, data_dir=tmp_path, max_json_bytes=1000)
    with TestClient(create_app(settings=settings)) as client:
        response = client.post("/v1/documents", json={"documents": [{"text": "x" * 2000}]})
    assert response.status_code == 413 and "RAGBUS_MAX_JSON_BYTES" in response.text


def test_a_file_over_its_limit_is_refused_as_it_streams(kafka_broker, tmp_path):
    settings = IngestSettings(
        kafka_bootstrap=kafka_broker, data_dir=tmp_path, max_upload_bytes=1000
    )
    with TestClient(create_app(settings=settings)) as client:
        response = client.post(
            "/v1/documents",
            files=[("files", (f"{uuid.uuid4().hex}.txt", b"x" * 5000, "text/plain"))],
        )
    assert response.status_code == 413 and "RAGBUS_MAX_UPLOAD_BYTES" in response.text
