"""A model file that is not byte-for-byte the tested one must be refused, not silently used."""

import hashlib
from pathlib import Path

import pytest

from ragbus.adapters.embedding.model_files import ModelFileError, verified

pytestmark = pytest.mark.unit


def test_matching_sha256_returns_path(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"weights")
    assert verified(path, hashlib.sha256(b"weights").hexdigest()) == path


def test_sha256_mismatch_raises(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"tampered weights")
    with pytest.raises(ModelFileError, match="expected"):
        verified(path, hashlib.sha256(b"weights").hexdigest())


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="missing"):
        verified(tmp_path / "absent.onnx", "0" * 64)
