"""Attach computed vectors to their chunks: pure, no I/O."""

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from contracts.events import ChunksReady, EmbeddedChunk, VectorsReady
from contracts.vectors import pack


def texts_of(events: Sequence[ChunksReady]) -> list[str]:
    return [chunk.text for event in events for chunk in event.chunks]


def attach_vectors(
    events: Sequence[ChunksReady], vectors: NDArray[np.float32], model: str
) -> list[VectorsReady]:
    """One `vectors.ready` event per `chunks.ready` event, rows of `vectors` in chunk order."""
    expected = sum(len(event.chunks) for event in events)
    if len(vectors) != expected:
        raise ValueError(f"{len(vectors)} vectors for {expected} chunks")
    out, row = [], 0
    for event in events:
        chunks = [
            EmbeddedChunk(**chunk.model_dump(), vector=pack(vectors[row + offset]))
            for offset, chunk in enumerate(event.chunks)
        ]
        row += len(chunks)
        fields = event.model_dump(exclude={"chunks", "embed_model", "event_id", "occurred_at"})
        out.append(
            VectorsReady(**fields, model=model, dimensions=int(vectors.shape[1]), chunks=chunks)
        )
    return out
