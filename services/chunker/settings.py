"""Chunker settings."""

from functools import cache

from pydantic import AliasChoices, Field

from ragbus.settings import CommonSettings


class ChunkerSettings(CommonSettings):
    port: int = Field(default=8085, validation_alias=AliasChoices("RAGBUS_CHUNKER_PORT"))
    overlap_tokens: int = Field(default=32, ge=0)
    chunks_per_event: int = Field(default=64, ge=1, description="chunks in one chunks.ready event")
    max_blob_bytes: int = Field(default=100 * 1024 * 1024, ge=1)


@cache
def get_settings() -> ChunkerSettings:
    return ChunkerSettings()
