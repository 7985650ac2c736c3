"""The model built from the packaged fp32 weights: the graph computes BERT, the build is
reproducible to the byte, and the int8 file computes in integers yet agrees with fp32."""

import json
import shutil
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from ragbus.adapters.embedding import convert
from ragbus.adapters.embedding.model_files import (
    ModelFileError,
    bert_config_path,
    load_tokenizer,
    safetensors_path,
    sha256_of,
)
from ragbus.adapters.embedding.onnx_backend import OnnxEmbedder, OnnxModel
from ragbus_ops.cli import main

from .bert_reference import forward

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A Deployment provides declarative updates for Pods and ReplicaSets; you describe a desired "
    "state and the controller changes the actual state to it at a controlled rate.",
]


@pytest.fixture(scope="module")
def weights() -> dict[str, Any]:
    return convert.read_safetensors(safetensors_path())


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return dict(json.loads(bert_config_path().read_text()))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """The default recipe, built once for the module."""
    path = tmp_path_factory.mktemp("model") / convert.MODEL_FILE
    return path, convert.build(path)


def _feeds(texts: list[str]) -> dict[str, np.ndarray]:
    encodings = load_tokenizer().encode_batch(texts)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


@pytest.mark.unit
def test_read_safetensors_layout(tmp_path: Path) -> None:
    header = {
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "b": {"dtype": "I64", "shape": [2], "data_offsets": [24, 40]},
    }
    raw = json.dumps(header).encode()
    body = np.arange(6, dtype=np.float32).tobytes() + np.array([7, -1], dtype=np.int64).tobytes()
    path = tmp_path / "t.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)
    tensors = convert.read_safetensors(path)
    assert set(tensors) == {"a", "b"}
    np.testing.assert_array_equal(tensors["a"], np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(tensors["b"], [7, -1])


@pytest.mark.integration
def test_fp32_graph_matches_numpy_reference(weights: Any, config: Any) -> None:
    session = ort.InferenceSession(
        convert.bert_graph(weights, config).SerializeToString(),
        providers=["CPUExecutionProvider"],
    )
    feeds = _feeds(SENTENCES)  # padded to the longest: the mask matters
    (hidden,) = session.run([convert.OUTPUT], feeds)
    expected = forward(weights, config, feeds["input_ids"], feeds["attention_mask"])
    real = feeds["attention_mask"].astype(bool)
    assert hidden.shape == (*feeds["input_ids"].shape, config["hidden_size"])
    assert np.abs(hidden[real] - expected[real]).max() < 1e-4


@pytest.mark.integration
def test_fp32_sanity_cosines(weights: Any, config: Any, tmp_path: Path) -> None:
    path = tmp_path / "fp32.onnx"
    onnx.save(convert.bert_graph(weights, config), path)
    backend = OnnxEmbedder(intra_op_num_threads=1, model=OnnxModel("fp32", lambda: path))
    try:
        food, bread, baby, _ = backend.embed(SENTENCES)
    finally:
        backend.close()
    assert float(food @ bread) == pytest.approx(0.75, abs=0.01)
    assert float(food @ baby) == pytest.approx(-0.11, abs=0.01)


@pytest.mark.integration
def test_build_is_pinned_and_fused(built: tuple[Path, dict[str, int]]) -> None:
    path, fused = built
    assert sha256_of(path) == convert.MODEL_SHA256
    assert fused == {
        "EmbedLayerNormalization": 1,
        "Attention": 6,
        "SkipLayerNormalization": 12,
        "BiasGelu": 6,
    }
    ops = Counter(node.op_type for node in onnx.load(path).graph.node)
    # Integer kernels: every weight matrix multiply and the attention run on int8.
    assert ops["QAttention"] == 6
    assert ops["MatMulInteger"] == 18
    assert ops["MatMul"] == 0


@pytest.mark.integration
def test_int8_agrees_with_fp32(
    built: tuple[Path, dict[str, int]], weights: Any, config: Any
) -> None:
    session = ort.InferenceSession(str(built[0]), providers=["CPUExecutionProvider"])
    feeds = _feeds(SENTENCES)
    (hidden,) = session.run([convert.OUTPUT], feeds)
    expected = forward(weights, config, feeds["input_ids"], feeds["attention_mask"])
    mask = feeds["attention_mask"][:, :, None]
    pooled = [(h * mask).sum(axis=1) for h in (hidden, expected)]
    a, b = (p / np.linalg.norm(p, axis=1, keepdims=True) for p in pooled)
    assert np.sum(a * b, axis=1).min() > 0.99


@pytest.mark.integration
def test_model_path_reuses_a_verified_file(
    built: tuple[Path, dict[str, int]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[Path] = []

    def fake_build(target: Path, recipe: convert.Recipe = convert.RECIPE) -> dict[str, int]:
        builds.append(target)
        shutil.copyfile(built[0], target)
        return {}

    monkeypatch.setattr(convert, "build", fake_build)
    path = convert.model_path(tmp_path)
    assert builds == [path]
    assert convert.model_path(tmp_path) == path
    assert len(builds) == 1  # the second call only hashed the file
    path.write_bytes(b"tampered")
    assert sha256_of(convert.model_path(tmp_path)) == convert.MODEL_SHA256
    assert len(builds) == 2


@pytest.mark.unit
def test_model_path_refuses_unpinned_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def other_bytes(target: Path) -> dict[str, int]:
        target.write_bytes(b"built by other versions of onnx and onnxruntime")
        return {}

    monkeypatch.setattr(convert, "build", other_bytes)
    with pytest.raises(ModelFileError, match="pinned"):
        convert.model_path(tmp_path)
    assert not (tmp_path / convert.MODEL_FILE).exists()


@pytest.mark.integration
def test_model_command_builds_into_the_cache(
    built: tuple[Path, dict[str, int]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(convert, "build", lambda target: shutil.copyfile(built[0], target))
    assert main(["model", "build", "--cache-dir", str(tmp_path)]) == 0
    assert sha256_of(tmp_path / convert.MODEL_FILE) == convert.MODEL_SHA256
    assert convert.MODEL_SHA256 in capsys.readouterr().out
