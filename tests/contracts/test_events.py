import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from contracts import ids, vectors
from contracts.events import (
    EVENT_TYPES,
    ChunksReady,
    DocumentUploaded,
    StatusUpdate,
    describe_validation_error,
)
from contracts.schema import json_schemas

pytestmark = pytest.mark.unit

SCHEMAS = Path(__file__).resolve().parents[2] / "contracts" / "schemas"


def uploaded(**overrides):
    fields = {
        "document_id": "doc-1",
        "tenant_id": "acme",
        "blob_uri": "file:///tmp/blob",
        "filename": "a.md",
    }
    return DocumentUploaded(**{**fields, **overrides})


def test_round_trip_through_json_keeps_every_field():
    event = uploaded(sha256="a" * 64, version="a" * 16, metadata={"team": "x", "n": 3})
    assert DocumentUploaded.model_validate_json(event.model_dump_json()) == event


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"schema_version": "2.0"}, "schema_version '2.0' is not supported"),
        ({"document_id": ""}, "document_id"),
        ({"sha256": "not-hex"}, "sha256"),
        ({"unexpected": 1}, "unexpected: Extra inputs are not permitted"),
    ],
)
def test_invalid_events_are_rejected_with_a_readable_reason(overrides, reason):
    with pytest.raises(ValidationError) as caught:
        uploaded(**overrides)
    assert reason in describe_validation_error(caught.value)


def test_minor_versions_of_the_same_major_are_accepted():
    assert uploaded(schema_version="1.7").schema_version == "1.7"


def test_events_are_frozen():
    with pytest.raises(ValidationError):
        uploaded().document_id = "other"  # type: ignore[misc]


def test_vectors_pack_to_float32_and_back():
    vector = np.linspace(-1, 1, 384, dtype=np.float32)
    packed = vectors.pack(vector)
    assert len(packed) < len(json.dumps(vector.tolist())) / 2
    np.testing.assert_array_equal(vectors.unpack(packed, 384), vector)
    with pytest.raises(ValueError, match="expected 383"):
        vectors.unpack(packed, 383)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_vector_with_nan_or_infinity_is_refused(bad):
    vector = np.zeros(4, dtype=np.float32)
    vector[2] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        vectors.unpack(vectors.pack(vector), 4)


def test_ids_are_deterministic_and_distinct():
    assert ids.chunk_id("d", "v1", 0) == ids.chunk_id("d", "v1", 0)
    assert (
        len({ids.chunk_id("d", "v1", 0), ids.chunk_id("d", "v2", 0), ids.chunk_id("d", "v1", 1)})
        == 3
    )
    assert ids.document_id("t1", "a.md") != ids.document_id("t2", "a.md")
    assert ids.version_of(ids.sha256_of(b"x")) == ids.sha256_of(b"x")[:16]


def test_status_update_and_chunks_ready_carry_the_common_fields():
    for model in (StatusUpdate, ChunksReady):
        required = set(model.model_json_schema()["properties"])
        assert {
            "schema_version",
            "event_id",
            "document_id",
            "tenant_id",
            "trace_id",
            "occurred_at",
        } <= required


def test_the_published_json_schemas_are_up_to_date():
    """A change to an event's shape must be deliberate: `make schemas` regenerates the files."""
    assert set(json_schemas()) == set(EVENT_TYPES)
    for name, schema in json_schemas().items():
        assert json.loads((SCHEMAS / f"{name}.schema.json").read_text()) == schema, name
