"""Query service settings."""

from functools import cache

from pydantic import AliasChoices, Field

from ragbus.settings import CommonSettings


class QuerySettings(CommonSettings):
    port: int = Field(default=8082, validation_alias=AliasChoices("RAGBUS_QUERY_PORT"))
    max_top_k: int = Field(default=50, ge=1)


@cache
def get_settings() -> QuerySettings:
    return QuerySettings()
