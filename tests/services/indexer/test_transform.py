import pytest

from contracts.ids import chunk_id
from services.indexer.transform import promoted, to_points
from tests.events import vectors_ready

pytestmark = pytest.mark.unit


def test_points_are_keyed_by_chunk_id_and_carry_the_payload():
    (point,) = to_points(vectors_ready([1], total=2, title="A", metadata={"team": "x"}))
    assert point.id == chunk_id("doc", "v1", 1)
    assert point.payload["tenant_id"] == "acme" and point.payload["text"] == "chunk 1 of v1"
    assert point.payload["metadata"] == {"team": "x"} and point.payload["source"] == "doc.md"
    assert list(point.vector) == [0.0, 1.0, 0.0, 0.0]


def test_a_vector_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="expected 4"):
        to_points(vectors_ready([0], total=1, dimensions=4, vector_length=3))


def test_promotion_names_the_generation():
    event = promoted(
        vectors_ready([0], total=1), alias="ragbus", collection="ragbus_g3", points=1, replaced=2
    )
    assert (event.generation, event.points, event.replaced_versions) == (3, 1, 2)
