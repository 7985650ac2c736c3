import pytest

from contracts.ids import document_id, sha256_of
from services.ingest.transform import RejectedUpload, check_upload, clean_filename, uploaded_event


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
