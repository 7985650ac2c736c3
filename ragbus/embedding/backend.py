"""The contract every embedding backend meets, so services never care where vectors come from.

The embedder service (passages, in batches) and the query service (one query at a time) hold an
`EmbeddingBackend` and call `embed` through `asyncio.to_thread`: it is synchronous and CPU- or
network-bound, and must not block the event loop.
"""

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
"""float32 array of shape [n, dimensions] whose rows have unit L2 norm."""


class EmbeddingUnavailable(RuntimeError):
    """The backend is unreachable, overloaded (5xx) or timed out: retry later with backoff.

    Anything else a backend raises (ValueError for a rejected request, ModelFileError for a bad
    model file) is permanent: retrying the same input will fail the same way.
    """


class EmbeddingBackend(Protocol):
    """Turns texts into unit-length vectors; cosine similarity is then a dot product.

    Deliberately not runtime-checkable: on Python 3.11 isinstance() would read `dimensions`,
    which for a remote backend may mean a network call.
    """

    @property
    def name(self) -> str:
        """Model name, recorded with every vector so an index never mixes models."""
        ...

    @property
    def dimensions(self) -> int:
        """Length of every vector (a remote backend may have to ask its server once)."""
        ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed `texts` in order: float32 [len(texts), dimensions], L2-normalised rows."""
        ...

    def close(self) -> None:
        """Release sessions, threads and connections; the backend is unusable afterwards."""
        ...


def l2_normalise(vectors: npt.NDArray[np.floating]) -> Vectors:
    """Unit-length float32 rows; an all-zero row stays zero instead of becoming NaN."""
    out = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.ascontiguousarray(out / np.maximum(norms, np.float32(1e-12)), dtype=np.float32)
