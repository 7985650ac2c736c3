"""The blob store and what an event's blob URI may name."""

import pytest

from ragbus.adapters.blobs import BlobError, BlobStore, read_blob

pytestmark = pytest.mark.unit


@pytest.fixture
def store(tmp_path):
    return BlobStore(tmp_path / "blobs")


def test_a_stored_blob_reads_back(store):
    uri, digest = store.put(b"hello")
    assert read_blob(uri, 100, [store.root]) == b"hello"
    assert store.put(b"hello") == (uri, digest)


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("file:///etc/passwd", "outside the blob store"),
        ("file://{root}/../../etc/passwd", "outside the blob store"),
        ("file://{root}/%2E%2E/secret", "outside the blob store"),
        ("file://evil.example/{root}/x", "names another host"),
        ("https://example.com/a.pdf", "unsupported blob URI scheme"),
        ("file://{root}/missing", "does not exist"),
    ],
)
def test_a_uri_outside_the_roots_or_unreadable_is_refused(store, tmp_path, uri, reason):
    (tmp_path / "secret").write_bytes(b"secret")
    store.root.mkdir(parents=True, exist_ok=True)
    with pytest.raises(BlobError, match=reason):
        read_blob(uri.format(root=store.root), 100, [store.root])


def test_a_symlink_out_of_the_store_is_refused(store, tmp_path):
    (tmp_path / "secret").write_bytes(b"secret")
    store.root.mkdir(parents=True)
    (store.root / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(BlobError, match="outside the blob store"):
        read_blob((store.root / "link").as_uri(), 100, [store.root])


def test_an_oversized_blob_is_refused(store):
    uri, _ = store.put(b"x" * 101)
    with pytest.raises(BlobError, match="over the 100-byte limit"):
        read_blob(uri, 100, [store.root])


def test_extra_roots_admit_a_producers_files(store, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "a.txt").write_bytes(b"shared")
    assert read_blob((shared / "a.txt").as_uri(), 100, [store.root, shared]) == b"shared"
