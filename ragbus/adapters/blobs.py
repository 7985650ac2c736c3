"""A content-addressed blob store on a local directory; events carry `file://` URIs to it.

Each tenant's blobs live apart (`tenants/<key>/<ab>/<sha256>`, the key a digest of the tenant's
name), so the same bytes uploaded by two tenants are two blobs, and a blob of the store is read
only for events of the tenant that stored it: an event naming another tenant's blob is refused.
Blobs stored before this layout (`<ab>/<sha256>` at the top) stay readable by any tenant."""

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

from contracts.ids import sha256_of


class BlobError(ValueError):
    """A blob URI cannot be read: unsupported scheme, missing file, or wrong content."""


TENANTS = "tenants"


def tenant_key(tenant_id: str) -> str:
    """A tenant's directory name: its name's digest (names may hold any character)."""
    return sha256_of(tenant_id.encode())[:32]


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def put(self, data: bytes, tenant_id: str) -> tuple[str, str]:
        """Store the tenant's `data` under its sha256; return (URI, sha256). Storing twice is a
        no-op."""
        digest = sha256_of(data)
        path = self.root / TENANTS / tenant_key(tenant_id) / digest[:2] / digest
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename, so a reader never sees a half-written blob.
            with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
                handle.write(data)
            os.replace(handle.name, path)
        return path.as_uri(), digest

    def remove(self, uri: str) -> bool:
        """Remove the blob behind `uri` when it is one of this store's; whether it was."""
        parsed = urlparse(uri)
        path = Path(unquote(parsed.path)).resolve()
        if parsed.scheme != "file" or not path.is_relative_to(self.root) or path == self.root:
            return False
        try:
            path.unlink()
        except (FileNotFoundError, IsADirectoryError):
            return False
        return True


def read_blob(
    uri: str, max_bytes: int, roots: Sequence[Path], tenant_id: str, store: Path
) -> bytes:
    """Read the bytes behind a `file://` URI inside one of `roots`, refusing anything larger
    than `max_bytes`: an event can name a blob, never any other file of the machine, and never
    a blob another tenant stored in the blob store at `store`."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise BlobError(f"unsupported blob URI scheme {parsed.scheme!r} in {uri!r} (use file://)")
    if parsed.netloc not in ("", "localhost"):
        raise BlobError(f"blob URI {uri!r} names another host ({parsed.netloc})")
    path = Path(unquote(parsed.path)).resolve()
    if not any(path.is_relative_to(root.resolve()) for root in roots):
        raise BlobError(
            f"blob {uri} is outside the blob store (readable roots: "
            f"{', '.join(str(root) for root in roots)}; see RAGBUS_BLOB_ROOTS)"
        )
    tenants = store.resolve() / TENANTS
    if path.is_relative_to(tenants) and not path.is_relative_to(tenants / tenant_key(tenant_id)):
        raise BlobError(f"blob {uri} was stored by another tenant")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise BlobError(f"blob {uri} is {size} bytes, over the {max_bytes}-byte limit")
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise BlobError(f"blob {uri} does not exist") from exc
    except IsADirectoryError as exc:
        raise BlobError(f"blob {uri} is a directory") from exc
