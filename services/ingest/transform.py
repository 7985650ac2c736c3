"""From an accepted upload to its `document.uploaded` event: pure, no I/O."""

import unicodedata
from pathlib import PurePosixPath

from contracts.events import DocumentState, DocumentUploaded, Metadata
from contracts.formats import SUPPORTED_EXTENSIONS
from contracts.ids import document_id, upload_version
from contracts.status import DocumentRecord


class RejectedUpload(ValueError):
    """An upload refused at the door; `status_code` is the HTTP answer."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(reason)
        self.status_code = status_code


def clean_filename(raw: str | None) -> str:
    """A file's name as its source identity: a relative POSIX path, never used to open a file."""
    name = unicodedata.normalize("NFC", (raw or "").replace("\\", "/")).strip()
    if not name or any(_unsafe(ch) for ch in name):
        raise RejectedUpload(400, f"invalid file name {raw!r}")
    # An anchor ("/", or POSIX's "//") and the steps "." and ".." are dropped: no way up or out.
    parts = [
        part
        for part in PurePosixPath(name).parts
        if not part.startswith("/") and part not in (".", "..")
    ]
    if not parts:
        raise RejectedUpload(400, f"invalid file name {raw!r}")
    cleaned = "/".join(parts)
    if len(cleaned) > 256:
        raise RejectedUpload(400, f"file name longer than 256 characters: {cleaned[:40]}…")
    return cleaned


def _unsafe(character: str) -> bool:
    """Control characters, line and paragraph separators, and bidirectional controls (which
    make "txt.exe.md" display as "dm.exe.txt") have no place in a name."""
    return unicodedata.category(character) in ("Cc", "Zl", "Zp") or (
        unicodedata.bidirectional(character)
        in ("LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI")
    )


def check_upload(filename: str, size: int, max_bytes: int) -> None:
    suffix = PurePosixPath(filename).suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        kinds = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        raise RejectedUpload(
            415, f"{filename}: unsupported file type {suffix or '(none)'!r}; supported: {kinds}"
        )
    if size == 0:
        raise RejectedUpload(400, f"{filename}: file is empty")
    if size > max_bytes:
        raise RejectedUpload(413, f"{filename}: {size} bytes is over the {max_bytes}-byte limit")


def uploaded_event(
    *,
    tenant_id: str,
    filename: str,
    blob_uri: str,
    sha256: str,
    size_bytes: int,
    content_type: str | None,
    title: str | None = None,
    metadata: Metadata | None = None,
) -> DocumentUploaded:
    """The event for one accepted file; its id follows from tenant and name, its version
    from its content, title and metadata (any of them changed is a new version)."""
    return DocumentUploaded(
        document_id=document_id(tenant_id, filename),
        tenant_id=tenant_id,
        blob_uri=blob_uri,
        filename=filename,
        content_type=content_type,
        sha256=sha256,
        size_bytes=size_bytes,
        version=upload_version(sha256, title, metadata),
        title=title,
        metadata=metadata or {},
    )


def is_unchanged(record: DocumentRecord | None, event: DocumentUploaded) -> bool:
    """Whether `event` uploads the version the document has already, indexed or on its way:
    running the pipeline again would change nothing, so the upload is a no-op."""
    return (
        record is not None
        and record.version == event.version
        and record.state not in (DocumentState.FAILED, DocumentState.DELETED)
    )
