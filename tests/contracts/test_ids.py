"""Deterministic ids: the same input always names the same document, version and chunk."""

import pytest

from contracts.ids import chunk_id, document_id, sha256_of, upload_version, version_of

pytestmark = pytest.mark.unit

CONTENT = sha256_of(b"Giraffes sleep two hours a day.")


def test_ids_follow_their_inputs_only():
    assert document_id("acme", "notes.md") == document_id("acme", "notes.md")
    assert document_id("acme", "notes.md") != document_id("beta", "notes.md")
    assert chunk_id("d", "v", 0) == chunk_id("d", "v", 0) != chunk_id("d", "v", 1)


def test_an_upload_without_title_or_metadata_is_versioned_by_its_content():
    assert upload_version(CONTENT, None, None) == upload_version(CONTENT, "", {})
    assert upload_version(CONTENT, None, None) == version_of(CONTENT)


@pytest.mark.parametrize(
    ("title", "metadata"),
    [("Giraffes", None), (None, {"team": "zoo"}), ("Giraffes", {"team": "zoo"})],
)
def test_a_title_or_metadata_makes_another_version_whatever_the_key_order(title, metadata):
    version = upload_version(CONTENT, title, metadata)
    assert version != version_of(CONTENT)
    assert version == upload_version(CONTENT, title, dict(reversed((metadata or {}).items())))
    assert version != upload_version(CONTENT, title, {**(metadata or {}), "extra": "x"})
