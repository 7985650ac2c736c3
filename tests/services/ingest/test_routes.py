"""The upload API on a real broker: limits refused before reading, deletes of unknown documents."""

import pytest
from fastapi.testclient import TestClient

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
