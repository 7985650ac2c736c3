"""Embedding backends: TEI over HTTP when a URL is configured, else the packaged CPU model."""

import threading
from collections.abc import Callable
from typing import get_args

from ragbus.ports import EmbeddingBackend, EmbeddingUnavailable
from ragbus.settings import DEFAULT_EMBED_MODEL, EmbedModel

__all__ = ["Embedders", "EmbeddingBackend", "EmbeddingUnavailable", "create_backend"]


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


class Embedders:
    """Embedding backends by model, each loaded on first use and kept: an index generation may
    be built with another model than the configured one, and whoever embeds for it (the
    embedder building it, the query service reading it) must use that model.

    A model is asked for by its setting name (`RAGBUS_EMBED_MODEL`, e.g. "minilm-int8-pc") or
    by the name its vectors carry; None is the configured backend. `make` builds the backend of
    another in-process model (None: only the configured one is available, e.g. behind TEI).
    """

    def __init__(
        self,
        configured: EmbeddingBackend,
        configured_key: str | None = None,
        make: Callable[[EmbedModel], EmbeddingBackend] | None = None,
    ) -> None:
        self.configured = configured
        self._names = {configured.name, configured_key} - {None}
        self._make = make
        self._loaded: dict[EmbedModel, EmbeddingBackend] = {}
        self._lock = threading.Lock()

    def get(self, model: str | None) -> EmbeddingBackend:
        """The backend of `model`; ValueError when it cannot be had here."""
        if model is None or model in self._names:
            return self.configured
        key = _model_key(model)
        if key is None or self._make is None:
            raise ValueError(
                f"embedding model {model!r} is not available here (this service embeds with "
                f"{self.configured.name!r}; in-process models: {', '.join(get_args(EmbedModel))})"
            )
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = self._make(key)
            return self._loaded[key]

    def ready(self, model: str | None) -> bool:
        """Whether `get(model)` returns at once (the model is configured or loaded already)."""
        key = None if model is None or model in self._names else _model_key(model)
        return key is None or key in self._loaded

    def close(self) -> None:
        """Close the backends loaded here (the configured one stays its owner's)."""
        for backend in self._loaded.values():
            backend.close()
        self._loaded.clear()


def _model_key(model: str) -> EmbedModel | None:
    """The setting name of an in-process model, from itself or the name its vectors carry."""
    if model in get_args(EmbedModel):
        return model  # type: ignore[return-value]  # checked against the Literal's values
    from ragbus.adapters.embedding.onnx_backend import MODELS

    return next((key for key, spec in MODELS.items() if spec.name == model), None)
