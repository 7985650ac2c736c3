from datetime import UTC, datetime

import numpy as np
import pytest

from contracts.events import Chunk, ChunksReady
from contracts.vectors import unpack
from services.embedder.transform import attach_vectors, texts_of

pytestmark = pytest.mark.unit


def chunks_ready(document_id, count, batch=0):
    return ChunksReady(
        document_id=document_id,
        tenant_id="t",
        version="v",
        source=f"{document_id}.md",
        total_chunks=count,
        batch=batch,
        uploaded_at=datetime.now(UTC),
        chunks=[
            Chunk(chunk_id=f"{document_id}-{n}", ordinal=n, text=f"text {n}", token_count=2)
            for n in range(count)
        ],
    )


def test_each_event_gets_its_own_rows_in_order():
    events = [chunks_ready("a", 2), chunks_ready("b", 3)]
    vectors = np.arange(5 * 4, dtype=np.float32).reshape(5, 4)
    out = attach_vectors(events, vectors, "model")
    assert [e.document_id for e in out] == ["a", "b"]
    assert out[1].chunks[0].chunk_id == "b-0"
    np.testing.assert_array_equal(unpack(out[1].chunks[0].vector, 4), vectors[2])
    assert out[0].dimensions == 4 and out[0].model == "model"
    assert out[0].trace_id == events[0].trace_id
    assert texts_of(events) == ["text 0", "text 1", "text 0", "text 1", "text 2"]


def test_a_count_mismatch_is_an_error_not_a_silent_shift():
    with pytest.raises(ValueError, match="3 vectors for 2 chunks"):
        attach_vectors([chunks_ready("a", 2)], np.zeros((3, 4), np.float32), "m")
