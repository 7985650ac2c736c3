from datetime import UTC, datetime

import numpy as np
import pytest

from contracts.events import EmbeddedChunk, VectorsReady
from contracts.vectors import pack
from services.indexer.transform import promoted, to_points

pytestmark = pytest.mark.unit


def vectors_ready(dimensions=4, vector_dims=4):
    return VectorsReady(
        document_id="d",
        tenant_id="t",
        version="v",
        source="a.md",
        title="A",
        metadata={"team": "x"},
        total_chunks=1,
        batch=0,
        uploaded_at=datetime.now(UTC),
        model="m",
        dimensions=dimensions,
        chunks=[
            EmbeddedChunk(
                chunk_id="00000000-0000-0000-0000-000000000001",
                ordinal=0,
                text="hello",
                token_count=1,
                vector=pack(np.ones(vector_dims, np.float32)),
            )
        ],
    )


def test_points_are_keyed_by_chunk_id_and_carry_the_payload():
    (point,) = to_points(vectors_ready())
    assert point.id == "00000000-0000-0000-0000-000000000001"
    assert point.payload["tenant_id"] == "t" and point.payload["text"] == "hello"
    assert point.payload["metadata"] == {"team": "x"} and point.payload["source"] == "a.md"
    assert list(point.vector) == [1.0] * 4


def test_a_vector_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="expected 4"):
        to_points(vectors_ready(dimensions=4, vector_dims=3))


def test_promotion_names_the_generation():
    event = promoted(vectors_ready(), alias="ragbus", collection="ragbus_g3", points=1, replaced=2)
    assert (event.generation, event.points, event.replaced_versions) == (3, 1, 2)
