"""BERT's forward pass in plain numpy (float64), written from the paper's equations rather than from
the ONNX graph, so the graph that `ragbus.adapters.embedding.convert` builds has something
independent to be checked against."""

from collections.abc import Mapping
from math import erf, sqrt
from typing import Any

import numpy as np
import numpy.typing as npt

Weights = Mapping[str, npt.NDArray[Any]]
F64 = npt.NDArray[np.float64]

_erf = np.vectorize(erf)


def _w(weights: Weights, name: str) -> F64:
    return np.asarray(weights[name], dtype=np.float64)


def _dense(x: F64, weights: Weights, prefix: str) -> F64:
    return x @ _w(weights, f"{prefix}.weight").T + _w(weights, f"{prefix}.bias")


def _layer_norm(x: F64, weights: Weights, prefix: str, eps: float) -> F64:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    normed = (x - mean) / np.sqrt(var + eps)
    return normed * _w(weights, f"{prefix}.weight") + _w(weights, f"{prefix}.bias")


def forward(
    weights: Weights, config: Mapping[str, Any], input_ids: npt.NDArray[np.int64], mask: Any
) -> F64:
    """last_hidden_state [batch, seq, hidden] for token ids and a 0/1 attention mask."""
    eps = float(config["layer_norm_eps"])
    heads = int(config["num_attention_heads"])
    batch, length = input_ids.shape
    size = int(config["hidden_size"]) // heads
    x = (
        _w(weights, "embeddings.word_embeddings.weight")[input_ids]
        + _w(weights, "embeddings.position_embeddings.weight")[np.arange(length)][None]
        + _w(weights, "embeddings.token_type_embeddings.weight")[0]
    )
    x = _layer_norm(x, weights, "embeddings.LayerNorm", eps)
    bias = np.where(np.asarray(mask)[:, None, None, :] > 0, 0.0, -1e9)

    def split(t: F64) -> F64:
        return t.reshape(batch, length, heads, size).transpose(0, 2, 1, 3)

    for n in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{n}"
        q, k, v = (
            split(_dense(x, weights, f"{p}.attention.self.{m}")) for m in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 1, 3, 2) / sqrt(size) + bias
        probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, heads * size)
        attended = _dense(context, weights, f"{p}.attention.output.dense") + x
        x = _layer_norm(attended, weights, f"{p}.attention.output.LayerNorm", eps)
        hidden = _dense(x, weights, f"{p}.intermediate.dense")
        gelu = 0.5 * hidden * (1.0 + _erf(hidden / sqrt(2.0)))
        x = _layer_norm(
            _dense(gelu, weights, f"{p}.output.dense") + x, weights, f"{p}.output.LayerNorm", eps
        )
    return x
