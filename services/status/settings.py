"""Status service settings."""

from functools import cache

from pydantic import AliasChoices, Field

from ragbus.settings import ServiceSettings


class StatusSettings(ServiceSettings):
    """The broker and the HTTP shell."""

    port: int = Field(default=8083, validation_alias=AliasChoices("RAGBUS_STATUS_PORT"))


@cache
def get_settings() -> StatusSettings:
    return StatusSettings()
