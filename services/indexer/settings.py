"""Indexer settings."""

from functools import cache

from pydantic import AliasChoices, Field

from ragbus.settings import ServiceSettings, StoreSettings


class IndexerSettings(ServiceSettings, StoreSettings):
    """The broker, the HTTP shell, the vector store; and its batches."""

    port: int = Field(default=8084, validation_alias=AliasChoices("RAGBUS_INDEXER_PORT"))
    max_events_per_batch: int = Field(default=16, ge=1)
    keep_generations: int = Field(
        default=1, ge=0, description="generations kept after a swap, to roll back to"
    )


@cache
def get_settings() -> IndexerSettings:
    return IndexerSettings()
