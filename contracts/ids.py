"""Deterministic identifiers: a replay or a re-upload of the same bytes maps to the same ids."""

import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

NAMESPACE = uuid.UUID("5f0c3b8e-6c1a-4c55-9d0e-2a4f8b7e91d3")


def document_id(tenant_id: str, source: str) -> str:
    """A document's id from its tenant and source name, so re-uploading a file updates it."""
    return str(uuid.uuid5(NAMESPACE, f"{tenant_id}\x1f{source}"))


def version_of(sha256: str) -> str:
    """A document version is named by its content."""
    return sha256[:16]


def upload_version(sha256: str, title: str | None, metadata: Mapping[str, Any] | None) -> str:
    """The version of an upload: its content, and its title and metadata when it has them, so
    that changing any of them makes a new version (and uploading all three again does not)."""
    if not (title or metadata):
        return version_of(sha256)
    described = orjson.dumps(
        {"title": title or None, "metadata": metadata or None}, option=orjson.OPT_SORT_KEYS
    )
    return version_of(sha256_of(sha256.encode() + described))


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chunk_id(document_id: str, version: str, ordinal: int) -> str:
    """The chunk's id, also its Qdrant point id."""
    return str(uuid.uuid5(NAMESPACE, f"{document_id}\x1f{version}\x1f{ordinal}"))
