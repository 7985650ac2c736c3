"""A content-addressed blob store on a local directory; events carry `file://` URIs to it."""

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

from contracts.ids import sha256_of


class BlobError(ValueError):
    """A blob URI cannot be read: unsupported scheme, missing file, or wrong content."""


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def put(self, data: bytes) -> tuple[str, str]:
        """Store `data` under its sha256; return (URI, sha256). Storing twice is a no-op."""
        digest = sha256_of(data)
        path = self.root / digest[:2] / digest
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


def read_blob(uri: str, max_bytes: int, roots: Sequence[Path]) -> bytes:
    """Read the bytes behind a `file://` URI inside one of `roots`, refusing anything larger
    than `max_bytes`: an event can name a blob, never any other file of the machine."""
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
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise BlobError(f"blob {uri} is {size} bytes, over the {max_bytes}-byte limit")
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise BlobError(f"blob {uri} does not exist") from exc
    except IsADirectoryError as exc:
        raise BlobError(f"blob {uri} is a directory") from exc
