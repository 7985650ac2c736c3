"""Ingest settings."""

from functools import cache

from pydantic import AliasChoices, Field

from ragbus.settings import BlobSettings, ServiceSettings


class IngestSettings(ServiceSettings, BlobSettings):
    """The broker, the HTTP shell, the blob store it writes; and its upload limits."""

    port: int = Field(default=8081, validation_alias=AliasChoices("RAGBUS_INGEST_PORT"))
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1, description="per file")
    max_request_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1,
        description="per request, counted as it streams: 413 as soon as it is passed",
    )
    max_json_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1,
        description="per JSON request of text documents (held in memory to be parsed; larger "
        "texts go as files)",
    )
    max_files_per_request: int = Field(default=1000, ge=1)
    blob_grace_s: float = Field(
        default=3600.0,
        ge=0,
        description="how long a blob no document uses any more is kept before it is removed",
    )
    blob_sweep_s: float = Field(
        default=60.0, gt=0, description="how often the blobs no document uses are looked for"
    )
    max_text_documents: int = Field(default=1000, ge=1)


@cache
def get_settings() -> IngestSettings:
    return IngestSettings()
