import pytest
from pydantic import TypeAdapter, ValidationError

from contracts.events import DocumentDeleted, DocumentUploaded, TenantUploadOrDelete
from contracts.ids import document_id
from contracts.topics import (
    TENANT_UPLOADS_DLQ,
    TENANT_UPLOADS_SUBSCRIPTION,
    dlq,
    tenant_of_topic,
    tenant_uploads,
)

pytestmark = pytest.mark.unit
ADAPTER: TypeAdapter[object] = TypeAdapter(TenantUploadOrDelete)


def test_a_tenant_topic_names_its_tenant_and_nothing_else_does():
    assert tenant_uploads("acme") == "tenant.acme.uploads"
    assert tenant_of_topic("tenant.acme.uploads") == "acme"
    assert tenant_of_topic("document.uploaded") is None
    assert tenant_of_topic("tenant.a.b.uploads") is None
    assert dlq("tenant.acme.uploads") == TENANT_UPLOADS_DLQ
    assert TENANT_UPLOADS_SUBSCRIPTION.startswith("^") and TENANT_UPLOADS_SUBSCRIPTION.endswith("$")
    for bad in ("Acme", "a.b", "", "-x", "x" * 64):
        with pytest.raises(ValueError, match="cannot name an upload topic"):
            tenant_uploads(bad)


def test_an_outside_event_is_bound_to_the_tenant_it_is_given():
    upload = ADAPTER.validate_json(b'{"blob_uri": "file:///d/a.md", "filename": "a.md"}')
    inside = upload.inside("acme")  # type: ignore[attr-defined]
    assert isinstance(inside, DocumentUploaded)
    assert (inside.tenant_id, inside.document_id) == ("acme", document_id("acme", "a.md"))
    deletion = ADAPTER.validate_json(b'{"kind": "deleted", "filename": "a.md"}')
    inside = deletion.inside("acme")  # type: ignore[attr-defined]
    assert isinstance(inside, DocumentDeleted) and inside.document_id == document_id("acme", "a.md")


@pytest.mark.parametrize("field", ["tenant_id", "document_id", "version"])
def test_an_outside_event_may_not_name_a_tenant_a_document_or_a_version(field):
    body = f'{{"blob_uri": "file:///d/a.md", "filename": "a.md", "{field}": "x"}}'
    with pytest.raises(ValidationError, match=field):
        ADAPTER.validate_json(body)
