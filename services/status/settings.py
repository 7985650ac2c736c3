"""Status service settings."""

from functools import cache

from pydantic import AliasChoices, Field

from ragbus.settings import ServiceSettings


class StatusSettings(ServiceSettings):
    """The broker, the HTTP shell, and how many status streams a tenant may hold open."""

    port: int = Field(default=8083, validation_alias=AliasChoices("RAGBUS_STATUS_PORT"))
    max_streams_per_tenant: int = Field(
        default=32, ge=1, description="SSE status streams one tenant may hold open at once"
    )


@cache
def get_settings() -> StatusSettings:
    return StatusSettings()
