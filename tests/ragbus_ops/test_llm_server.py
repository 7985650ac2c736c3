import hashlib
import json
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deploy.kafka.launcher import free_ports
from ragbus_ops.llm_server import (
    GGUF_MAGIC,
    MODEL_ALIAS,
    MODEL_SHA256,
    MODEL_SIZE,
    LlamaServer,
    LlmServerError,
    ModelFileError,
    is_verified,
    join_parts,
    model_path,
)


def sha256_of(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def flip_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as file:
        file.seek(offset)
        byte = file.read(1)
        file.seek(offset)
        file.write(bytes([byte[0] ^ 0xFF]))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One joined model for the module (491 MB), removed afterwards rather than left in /tmp."""
    cache = tmp_path_factory.mktemp("models")
    try:
        yield model_path(cache)
    finally:
        shutil.rmtree(cache)


@pytest.mark.integration
def test_the_parts_join_into_the_pinned_gguf(built: Path):
    assert built.stat().st_size == MODEL_SIZE
    assert built.read_bytes()[:4] == GGUF_MAGIC
    assert sha256_of(built) == MODEL_SHA256
    assert is_verified(built)


@pytest.mark.integration
def test_a_stamped_copy_is_trusted_without_reading_it(built: Path):
    """Size and mtime are the whole check on a restart: a change that keeps both goes unseen."""
    stat = built.stat()
    flip_byte(built, MODEL_SIZE // 2)
    os.utime(built, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    try:
        assert model_path(built.parent) == built
        assert built.stat().st_ino == stat.st_ino
    finally:
        flip_byte(built, MODEL_SIZE // 2)
        os.utime(built, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert is_verified(built)


@pytest.mark.integration
def test_an_intact_copy_without_its_stamp_is_rehashed_not_rejoined(built: Path):
    stamp = built.with_name(built.name + ".sha256")
    stamp.unlink()
    inode = built.stat().st_ino
    assert not is_verified(built)
    assert model_path(built.parent) == built
    assert built.stat().st_ino == inode
    assert stamp.read_text().startswith(MODEL_SHA256)


@pytest.mark.integration
@pytest.mark.parametrize("damage", ["truncated", "altered"])
def test_a_damaged_copy_is_rebuilt_from_the_parts(built: Path, damage: str):
    if damage == "truncated":
        os.truncate(built, MODEL_SIZE // 3)
    else:
        flip_byte(built, MODEL_SIZE - 1)
    assert not is_verified(built)
    assert model_path(built.parent) == built
    assert sha256_of(built) == MODEL_SHA256
    assert is_verified(built)


def write_parts(directory: Path, *contents: bytes) -> list[Path]:
    paths = [directory / f"part{n}.bin" for n in range(len(contents))]
    for path, content in zip(paths, contents, strict=True):
        path.write_bytes(content)
    return paths


@pytest.mark.unit
@pytest.mark.parametrize(
    ("contents", "pinned"),
    [
        ((b"GGUF", b"\x03\x00"), b"GGUF\x03\x01"),  # right size and magic, wrong bytes
        ((b"GGML", b"\x03\x00"), b"GGML\x03\x00"),  # digest matches, but it is no GGUF file
    ],
)
def test_parts_that_do_not_match_the_pin_are_refused(
    tmp_path: Path, contents: tuple[bytes, ...], pinned: bytes
):
    parts = write_parts(tmp_path, *contents)
    target = tmp_path / "out" / "model.gguf"
    expected = hashlib.sha256(pinned).hexdigest()
    actual = hashlib.sha256(b"".join(contents)).hexdigest()
    with pytest.raises(ModelFileError) as refused:
        join_parts(parts, target, sha256=expected, size=len(pinned))
    assert expected in str(refused.value)
    assert actual in str(refused.value)
    assert list(target.parent.iterdir()) == []


@pytest.mark.unit
def test_matching_parts_are_joined_in_order(tmp_path: Path):
    parts = write_parts(tmp_path, b"GGUF", b"ab", b"cd")
    target = tmp_path / "model.gguf"
    join_parts(parts, target, sha256=hashlib.sha256(b"GGUFabcd").hexdigest(), size=8)
    assert target.read_bytes() == b"GGUFabcd"


@pytest.mark.unit
def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        server = LlamaServer(holder.getsockname()[1], threads=1, log_path=tmp_path / "llm.log")
        with pytest.raises(LlmServerError, match="already in use"):
            server.start()
    assert server.pid() is None


@pytest.mark.unit
def test_a_server_that_dies_while_starting_reports_its_log(tmp_path: Path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(GGUF_MAGIC + b"\x00" * 64)
    server = LlamaServer(free_ports(1)[0], 1, tmp_path / "llm.log", model=broken)
    server.start()
    try:
        with pytest.raises(LlmServerError, match="exited during start") as failed:
            server.wait_ready(timeout=60)
        assert f"failed to load model from {broken}" in str(failed.value)
    finally:
        server.stop()


def stream_chat(url: str, question: str, context: str) -> list[str]:
    """The content deltas of a streamed chat completion, in arrival order."""
    body = {
        "model": MODEL_ALIAS,
        "stream": True,
        "temperature": 0,
        "max_tokens": 48,
        "messages": [
            {
                "role": "system",
                "content": "Answer the question in one complete sentence, using only the context.",
            },
            {"role": "user", "content": f"Context: {context}\n\nQuestion: {question}"},
        ],
    }
    deltas = []
    with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=120) as response:
        response.raise_for_status()
        lines = [line for line in response.iter_lines() if line.startswith("data:")]
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        choice = json.loads(line.removeprefix("data:"))["choices"][0]
        if choice["delta"].get("content"):
            deltas.append(choice["delta"]["content"])
    return deltas


@pytest.mark.integration
def test_the_server_lists_its_model(llm_server: str):
    listed = httpx.get(f"{llm_server}/models", timeout=10).json()
    assert [entry["id"] for entry in listed["data"]] == [MODEL_ALIAS]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("context", "question", "fact"),
    [
        ("The Eiffel Tower is in Paris.", "Which city is the Eiffel Tower in?", "Paris"),
        (
            "The ragbus project's mascot is a grey heron called Wendeline.",
            "What is the name of the ragbus mascot?",
            "Wendeline",
        ),
    ],
)
def test_a_streamed_answer_arrives_token_by_token_and_uses_the_context(
    llm_server: str, context: str, question: str, fact: str
):
    deltas = stream_chat(llm_server, question, context)
    assert len(deltas) >= 3
    assert fact in "".join(deltas)
