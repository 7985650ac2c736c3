"""Embedder settings."""

from functools import cache

from pydantic import AliasChoices, Field

from ragbus.settings import EmbeddingSettings, ServiceSettings


class EmbedderSettings(ServiceSettings, EmbeddingSettings):
    """The broker, the HTTP shell, the embedding model; and its batches."""

    port: int = Field(default=8086, validation_alias=AliasChoices("RAGBUS_EMBEDDER_PORT"))
    max_events_per_batch: int = Field(
        default=16, ge=1, description="chunks.ready events pulled into one embedding batch"
    )


@cache
def get_settings() -> EmbedderSettings:
    return EmbedderSettings()
