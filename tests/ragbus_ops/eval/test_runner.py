"""The run's pure parts (the whole run on real services is tests/e2e/test_eval.py)."""

import pytest

from ragbus_ops.eval.runner import ranked_sources

pytestmark = pytest.mark.unit


def citation(document_id: str, n: int) -> dict[str, object]:
    return {"n": n, "document_id": document_id, "source": f"{document_id}.txt", "score": 1 / n}


def test_documents_rank_by_their_best_chunk():
    citations = [citation(d, n) for n, d in enumerate(["a", "b", "a", "c", "b"], start=1)]
    assert ranked_sources(citations) == ["a.txt", "b.txt", "c.txt"]
