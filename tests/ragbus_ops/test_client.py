from pathlib import Path

import httpx
import pytest

from ragbus_ops.cli import _parser
from ragbus_ops.client import Progress, api_key, collect_files, sse_events

pytestmark = pytest.mark.unit


def record(document_id, state):
    return {"document_id": document_id, "state": state}


def test_a_document_counts_when_a_final_state_follows_a_change():
    progress = Progress()
    progress.expect("a", "a.md")
    assert not progress.observe(record("a", "INDEXED"))  # an old state sent on connect
    assert not progress.observe(record("a", "RECEIVED"))
    assert progress.observe(record("a", "INDEXED"))
    assert not progress.done, "more batches may still be uploaded"
    progress.uploading = False
    assert progress.done


def test_a_document_that_finishes_before_the_upload_answer_still_counts():
    progress = Progress()
    for state in ("RECEIVED", "CHUNKING", "FAILED"):
        progress.observe(record("b", state))
    assert not progress.final
    assert progress.expect("b", "b.pdf") == record("b", "FAILED")
    progress.uploading = False
    assert progress.done


def test_other_documents_are_ignored():
    progress = Progress()
    progress.expect("a", "a.md")
    progress.observe(record("z", "RECEIVED"))
    assert not progress.observe(record("z", "INDEXED"))
    progress.uploading = False
    assert not progress.done


def test_an_unchanged_document_is_final_at_once():
    progress = Progress()
    accepted = {"document_id": "u", "filename": "u.md", "status": "INDEXED", "unchanged": True}
    assert progress.unchanged(accepted)["state"] == "INDEXED"
    progress.uploading = False
    assert progress.done


def test_folders_are_walked_and_unsupported_files_skipped(tmp_path: Path):
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    for name in ("docs/a.md", "docs/sub/b.pdf", "docs/c.exe"):
        (tmp_path / name).write_bytes(b"x")
    chosen, skipped = collect_files([tmp_path / "docs"])
    assert [f.name for f in chosen] == ["docs/a.md", "docs/sub/b.pdf"]
    assert [p.name for p in skipped] == ["c.exe"]


async def test_sse_events_are_parsed_in_order():
    body = (
        b'event: retrieval\ndata: {"passages": []}\n\n'
        b": keepalive\n\n"
        b'event: token\ndata: {"text": "Den"}\n\n'
        b'data: {"plain": true}\n\n'
        b'event: done\ndata: {"answer": "Denver [1]"}\n\n'
    )
    events = [item async for item in sse_events(httpx.Response(200, content=body))]
    assert events == [
        ("retrieval", {"passages": []}),
        ("token", {"text": "Den"}),
        ("message", {"plain": True}),
        ("done", {"answer": "Denver [1]"}),
    ]


def test_the_key_comes_from_a_file_or_the_environment_never_only_the_command_line(
    tmp_path, monkeypatch
):
    parser = _parser()
    keyfile = tmp_path / "key"
    keyfile.write_text("k-from-file\n")
    monkeypatch.setenv("RAGBUS_API_KEY", "k-from-env")
    assert api_key(parser.parse_args(["status"])) == "k-from-env"
    assert api_key(parser.parse_args(["ask", "why?", "--api-key-file", str(keyfile)])) == (
        "k-from-file"
    )
    assert api_key(parser.parse_args(["index", "status", "--api-key", "k-given"])) == "k-given"
    monkeypatch.delenv("RAGBUS_API_KEY")
    assert api_key(parser.parse_args(["ingest", "docs"])) is None
