"""The contract every embedding backend meets, so services never care where vectors come from.

The embedder service (passages, in batches) and the query service (one query at a time) hold an
`EmbeddingBackend` and call `embed` through `asyncio.to_thread`: it is synchronous and CPU- or
network-bound, and must not block the event loop.
"""

import numpy as np
import numpy.typing as npt

from ragbus.ports import Vectors


def l2_normalise(vectors: npt.NDArray[np.floating]) -> Vectors:
    """Unit-length float32 rows; an all-zero row stays zero instead of becoming NaN."""
    out = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.ascontiguousarray(out / np.maximum(norms, np.float32(1e-12)), dtype=np.float32)
