"""What each ragbus service reads from its environment, taken from its pydantic-settings class.

Why: docker-compose.yml and the Kubernetes manifests set settings by name, and the settings
classes ignore names they do not know (`extra="ignore"`): a misspelt or retired name would be
dropped without a word. The deploy tests hold every name against the classes themselves.
"""

import importlib
import os
from collections.abc import Mapping
from typing import get_type_hints

import pytest
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from ragbus.settings import RagbusSettings


def settings_class(service: str) -> type[RagbusSettings]:
    """The class `services.<service>.settings.get_settings()` returns."""
    module = importlib.import_module(f"services.{service}.settings")
    cls: type[RagbusSettings] = get_type_hints(module.get_settings)["return"]
    return cls


def env_names(cls: type[BaseSettings]) -> frozenset[str]:
    """Every variable `cls` reads, upper case. A field with validation aliases is read under
    those alone (the prefix does not apply to them); any other under env_prefix + its name."""
    assert not cls.model_config.get("case_sensitive"), "names are compared upper case"
    prefix = cls.model_config.get("env_prefix", "")
    names: set[str] = set()
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            names.add(f"{prefix}{name}".upper())
        elif isinstance(alias, AliasChoices):
            names.update(choice.upper() for choice in alias.choices if isinstance(choice, str))
        else:
            names.add(str(alias).upper())
    return frozenset(names)


def default_port(service: str) -> int:
    port = settings_class(service).model_fields["port"].default
    assert isinstance(port, int)
    return port


def load_settings(
    service: str, env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch
) -> RagbusSettings:
    """The service's settings as a process with exactly `env` (for the names the class reads)
    would build them at start: raises what the service would stop with."""
    cls = settings_class(service)
    with monkeypatch.context() as patch:
        for name in list(os.environ):
            if name.upper() in env_names(cls):
                patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        return cls()
