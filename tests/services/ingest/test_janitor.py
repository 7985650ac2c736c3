"""Blobs no document needs any more: which are released, when they may go, and (on a real
broker) that the ingest service removes them."""

import time
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from contracts.events import DocumentDeleted, DocumentUploaded, GenerationPlan
from contracts.ids import sha256_of
from ragbus.adapters.blobs import TENANTS, tenant_key
from ragbus.settings import DEFAULT_TENANT
from services.ingest.janitor import BlobReferences
from services.ingest.main import create_app
from services.ingest.settings import IngestSettings


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def upload(document_id: str, blob: str) -> DocumentUploaded:
    return DocumentUploaded(
        document_id=document_id, tenant_id="acme", blob_uri=blob, filename=f"{document_id}.txt"
    )


def plan(generation: int, state: str) -> GenerationPlan:
    return GenerationPlan(
        alias="ragbus", generation=generation, plan_id=f"p{generation}", state=state
    )


@pytest.mark.unit
def test_a_blob_is_released_when_no_documents_latest_upload_names_it():
    clock = Clock()
    references = BlobReferences(clock)
    for event in (upload("a", "b1"), upload("b", "b1"), upload("c", "b3")):
        references.apply(event)
    references.apply(upload("a", "b2"))  # a replaced: b1 is still b's
    references.apply(DocumentDeleted(document_id="c", tenant_id="acme"))  # c deleted: b3 unused
    assert references.removable(0) == ["b3"]
    clock.now = 10.0
    references.apply(DocumentDeleted(document_id="b", tenant_id="acme"))
    assert references.removable(5) == ["b3"]  # b1 released at 10 s: not yet past its grace
    clock.now = 16.0
    assert sorted(references.removable(5)) == ["b1", "b3"]
    references.apply(upload("d", "b1"))  # the same bytes uploaded again: in use again
    assert references.removable(5) == ["b3"]


@pytest.mark.unit
def test_nothing_is_removed_while_a_generation_is_built():
    references = BlobReferences(Clock())
    references.apply(upload("a", "b1"))
    references.apply(DocumentDeleted(document_id="a", tenant_id="acme"))
    references.follow(plan(2, "building"))
    assert references.removable(0) == []
    references.follow(plan(2, "serving"))
    assert references.removable(0) == ["b1"]


def stored(root: Path, data: bytes) -> Path:
    digest = sha256_of(data)
    return root / TENANTS / tenant_key(DEFAULT_TENANT) / digest[:2] / digest


@pytest.mark.integration
def test_the_blobs_of_a_replaced_version_and_a_deleted_document_are_removed(kafka_broker, tmp_path):
    settings = IngestSettings(
        kafka_bootstrap=kafka_broker, data_dir=tmp_path, blob_grace_s=0, blob_sweep_s=0.2
    )
    app = create_app(settings=settings)
    kept, replaced, deleted = (f"{uuid.uuid4().hex}.txt" for _ in range(3))
    with TestClient(app) as client:

        def post(name: str, body: bytes) -> str:
            response = client.post("/v1/documents", files=[("files", (name, body, "text/plain"))])
            assert response.status_code == 202, response.text
            return str(response.json()["documents"][0]["document_id"])

        root = app.state.blobs.root
        post(kept, b"shared bytes")
        post(replaced, b"shared bytes")  # the same blob as `kept`'s
        gone = post(deleted, b"deleted bytes")
        post(replaced, b"newer bytes")  # `replaced` no longer uses the shared blob
        assert client.delete(f"/v1/documents/{gone}").status_code == 202
        deadline = time.monotonic() + 30
        while stored(root, b"deleted bytes").exists():
            assert time.monotonic() < deadline, "the deleted document's blob is still there"
            time.sleep(0.2)
        time.sleep(1.0)  # a few sweeps more: nothing else goes
        assert stored(root, b"shared bytes").exists()  # `kept` still uses it
        assert stored(root, b"newer bytes").exists()
