"""Embedding backends: TEI over HTTP when a URL is configured, else the packaged CPU model."""

from ragbus.ports import EmbeddingBackend, EmbeddingUnavailable
from ragbus.settings import DEFAULT_EMBED_MODEL, EmbedModel

__all__ = ["EmbeddingBackend", "EmbeddingUnavailable", "create_backend"]


def create_backend(
    tei_url: str | None,
    threads: int | None = None,
    batch_size: int = 32,
    model: EmbedModel = DEFAULT_EMBED_MODEL,
) -> EmbeddingBackend:
    """The backend the settings ask for; imports lazily so a TEI client never loads ONNX.
    `model` names the in-process model (TEI serves whichever model it was started with)."""
    if tei_url:
        from ragbus.adapters.embedding.tei_backend import TeiEmbedder

        return TeiEmbedder(tei_url, batch_size=batch_size)
    from ragbus.adapters.embedding.onnx_backend import MODELS, OnnxEmbedder

    return OnnxEmbedder(intra_op_num_threads=threads, batch_size=batch_size, model=MODELS[model])
