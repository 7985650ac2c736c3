"""The packaged CPU model: the numbers the rest of the pipeline relies on, with the real weights."""

from collections.abc import Iterator

import numpy as np
import pytest

from ragbus.embedding import EmbeddingBackend, create_backend
from ragbus.embedding.model_files import DIMENSIONS, MODEL_NAME
from ragbus.embedding.onnx_backend import OnnxEmbedder

FOOD = "A man is eating food."
BREAD = "A man is eating a piece of bread."
BABY = "The girl is carrying a baby."
LONG = " ".join(f"Pods are scheduled onto node {i} by the kube-scheduler." for i in range(80))


@pytest.fixture(scope="module")
def embedder() -> Iterator[OnnxEmbedder]:
    backend = OnnxEmbedder(intra_op_num_threads=2, batch_size=4)
    yield backend
    backend.close()


def test_meets_protocol(embedder: OnnxEmbedder) -> None:
    backend: EmbeddingBackend = embedder  # checked by mypy: the class meets the protocol
    assert backend.name == MODEL_NAME
    assert backend.dimensions == DIMENSIONS


def test_shape_dtype_and_unit_norms(embedder: OnnxEmbedder) -> None:
    vectors = embedder.embed([FOOD, BREAD, BABY, "", LONG])
    assert vectors.shape == (5, DIMENSIONS)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_sanity_cosines(embedder: OnnxEmbedder) -> None:
    food, bread, baby = embedder.embed([FOOD, BREAD, BABY])
    assert float(food @ bread) == pytest.approx(0.75, abs=0.05)
    assert float(food @ baby) == pytest.approx(-0.11, abs=0.05)


def test_order_preserved_across_length_buckets(embedder: OnnxEmbedder) -> None:
    # Mixed lengths, more texts than one micro-batch: sorting by length must be undone.
    texts = [LONG, FOOD, LONG[:300], BABY, "k", LONG[:900], BREAD, LONG[:50], "kubectl get pods"]
    together = embedder.embed(texts)
    alone = np.stack([embedder.embed([text])[0] for text in texts])
    np.testing.assert_allclose(np.sum(together * alone, axis=1), 1.0, atol=1e-3)


def test_batching_invariance(embedder: OnnxEmbedder) -> None:
    # Padded next to a long text, a short one must embed as it does alone.
    alone = embedder.embed([FOOD])[0]
    padded = embedder.embed([LONG, FOOD, LONG[:500]])[1]
    assert float(alone @ padded) > 0.999
    big = OnnxEmbedder(intra_op_num_threads=2, batch_size=64)
    try:
        np.testing.assert_allclose(
            np.sum(big.embed([LONG, FOOD, BABY]) * embedder.embed([LONG, FOOD, BABY]), axis=1),
            1.0,
            atol=1e-3,
        )
    finally:
        big.close()


def test_long_text_is_truncated(embedder: OnnxEmbedder) -> None:
    # Both texts exceed 256 tokens, so only their identical start is seen by the model.
    first, second = embedder.embed([LONG, LONG + " An entirely different ending about cats."])
    assert float(first @ second) > 0.9999


def test_empty_input(embedder: OnnxEmbedder) -> None:
    vectors = embedder.embed([])
    assert vectors.shape == (0, DIMENSIONS)
    assert vectors.dtype == np.float32


def test_single_str_is_refused(embedder: OnnxEmbedder) -> None:
    with pytest.raises(TypeError):
        embedder.embed(FOOD)


def test_closed_embedder_refuses() -> None:
    backend = OnnxEmbedder(intra_op_num_threads=1)
    backend.close()
    with pytest.raises(RuntimeError, match="closed"):
        backend.embed([FOOD])


def test_create_backend_without_url_is_onnx() -> None:
    backend = create_backend(None, threads=1, batch_size=8)
    try:
        assert isinstance(backend, OnnxEmbedder)
        assert backend.batch_size == 8
    finally:
        backend.close()
