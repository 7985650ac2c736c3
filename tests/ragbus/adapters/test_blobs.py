"""The blob store and what an event's blob URI may name."""

import pytest

from ragbus.adapters.blobs import BlobError, BlobStore, read_blob

pytestmark = pytest.mark.unit


@pytest.fixture
def store(tmp_path):
    return BlobStore(tmp_path / "blobs")


def read(store: BlobStore, uri: str, roots=None, tenant: str = "acme", limit: int = 100) -> bytes:
    return read_blob(uri, limit, roots or [store.root], tenant, store.root)


def test_a_stored_blob_reads_back(store):
    uri, digest = store.put(b"hello", "acme")
    assert read(store, uri) == b"hello"
    assert store.put(b"hello", "acme") == (uri, digest)


def test_a_blob_is_read_only_for_the_tenant_that_stored_it(store):
    mine, _ = store.put(b"the same bytes", "acme")
    theirs, _ = store.put(b"the same bytes", "beta")
    assert mine != theirs  # two tenants never share a blob
    assert read(store, mine) == b"the same bytes"
    with pytest.raises(BlobError, match="stored by another tenant"):
        read(store, theirs)


def test_a_blob_of_the_layout_before_tenants_is_still_read(store):
    legacy = store.root / "ab" / "abcdef"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"old")
    assert read(store, legacy.as_uri(), tenant="anyone") == b"old"


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
        read(store, uri.format(root=store.root))


def test_a_symlink_out_of_the_store_is_refused(store, tmp_path):
    (tmp_path / "secret").write_bytes(b"secret")
    store.root.mkdir(parents=True)
    (store.root / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(BlobError, match="outside the blob store"):
        read(store, (store.root / "link").as_uri())


def test_an_oversized_blob_is_refused(store):
    uri, _ = store.put(b"x" * 101, "acme")
    with pytest.raises(BlobError, match="over the 100-byte limit"):
        read(store, uri)


def test_extra_roots_admit_a_producers_files(store, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "a.txt").write_bytes(b"shared")
    assert read(store, (shared / "a.txt").as_uri(), [store.root, shared]) == b"shared"
