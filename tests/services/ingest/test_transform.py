from datetime import UTC, datetime

import pytest

from contracts.events import DocumentState
from contracts.ids import document_id, sha256_of
from contracts.status import DocumentRecord
from services.ingest.transform import (
    RejectedUpload,
    check_upload,
    clean_filename,
    is_unchanged,
    uploaded_event,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("a.md", "a.md"),
        ("docs/concepts/a.md", "docs/concepts/a.md"),
        ("../../etc/passwd.txt", "etc/passwd.txt"),
        ("/abs/path/x.pdf", "abs/path/x.pdf"),
        ("C:\\Users\\x\\file.docx", "C:/Users/x/file.docx"),
    ],
)
def test_file_names_become_relative_names_never_paths(raw, cleaned):
    assert clean_filename(raw) == cleaned


@pytest.mark.parametrize("raw", ["", None, "..", "a\x00b.txt", "x" * 300 + ".txt"])
def test_bad_file_names_are_refused(raw):
    with pytest.raises(RejectedUpload) as caught:
        clean_filename(raw)
    assert caught.value.status_code == 400


@pytest.mark.parametrize(
    ("name", "size", "status"),
    [("a.exe", 10, 415), ("noext", 10, 415), ("a.pdf", 0, 400), ("a.pdf", 101, 413)],
)
def test_limits(name, size, status):
    with pytest.raises(RejectedUpload) as caught:
        check_upload(name, size, max_bytes=100)
    assert caught.value.status_code == status
    assert name in str(caught.value)


def test_accepted_types_pass():
    for name in ("a.txt", "a.MD", "a.html", "a.htm", "a.pdf", "a.docx", "a.markdown"):
        check_upload(name, 1, max_bytes=100)


def test_event_id_follows_tenant_and_name_and_version_follows_content():
    digest = sha256_of(b"hello")
    event = uploaded_event(
        tenant_id="t",
        filename="a.md",
        blob_uri="file:///b",
        sha256=digest,
        size_bytes=5,
        content_type="text/markdown",
    )
    assert event.document_id == document_id("t", "a.md")
    assert event.version == digest[:16]


def _event(data=b"hello", **fields):
    return uploaded_event(
        tenant_id="t",
        filename="a.md",
        blob_uri="file:///b",
        sha256=sha256_of(data),
        size_bytes=len(data),
        content_type="text/markdown",
        **fields,
    )


def test_new_metadata_or_title_is_a_new_version_and_the_same_ones_are_not():
    plain = _event()
    tagged = _event(metadata={"team": "x"})
    assert tagged.version != plain.version
    assert _event(metadata={"team": "x"}).version == tagged.version
    assert _event(metadata={"team": "y"}).version != tagged.version
    assert _event(title="A").version not in (plain.version, tagged.version)


def _record(state, version):
    return DocumentRecord(
        document_id="d", tenant_id="t", state=state, version=version, updated_at=datetime.now(UTC)
    )


@pytest.mark.parametrize(
    ("state", "same_version", "unchanged"),
    [
        (DocumentState.INDEXED, True, True),
        (DocumentState.EMBEDDING, True, True),  # on its way already
        (DocumentState.INDEXED, False, False),
        (DocumentState.FAILED, True, False),  # a retry after a fix
        (DocumentState.DELETED, True, False),
    ],
)
def test_an_upload_is_unchanged_only_for_the_version_indexed_or_on_its_way(
    state, same_version, unchanged
):
    event = _event()
    record = _record(state, event.version if same_version else "other")
    assert is_unchanged(record, event) is unchanged
    assert is_unchanged(None, event) is False
