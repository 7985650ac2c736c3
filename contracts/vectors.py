"""Vectors travel as packed little-endian float32 in base64: a quarter of the JSON size."""

import base64

import numpy as np
from numpy.typing import NDArray


def pack(vector: NDArray[np.floating]) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def unpack(packed: str, dimensions: int) -> NDArray[np.float32]:
    """Decode a packed vector, refusing one whose length does not match `dimensions` or that
    holds NaN or infinity (which would make every search that meets it score NaN)."""
    raw = base64.b64decode(packed, validate=True)
    if len(raw) != dimensions * 4:
        raise ValueError(f"packed vector has {len(raw) // 4} floats, expected {dimensions}")
    vector = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if not np.isfinite(vector).all():
        raise ValueError("packed vector holds NaN or infinite values")
    return vector
