"""Every event on the bus: frozen pydantic models, the only place an event's shape is written.

All events are keyed by `document_id`, so one document's events stay ordered on one partition
(the query service's `Conversation` records, which are about no document, by `conversation_key`).
Within a major `schema_version` changes are backward compatible; a consumer rejects another
major version instead of guessing.
"""

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeAlias
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from contracts.ids import document_id
from contracts.topics import CONSUMER_GROUPS

SCHEMA_VERSION = "1.0"
SCHEMA_MAJOR = SCHEMA_VERSION.split(".")[0]

# Metadata values stay flat so they can be stored in Qdrant payloads and used as filters.
MetadataValue = str | int | float | bool | None
Metadata = dict[str, MetadataValue]

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Identifier = Annotated[str, Field(min_length=1, max_length=256)]


def new_event_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class UnsupportedSchemaVersion(ValueError):
    """The event was written for a major schema version this consumer does not understand."""


class Versioned(BaseModel):
    """A frozen, closed record whose `schema_version` must be of the major version this
    consumer reads: events and the records that are not about a document share the check."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: str = SCHEMA_VERSION

    @field_validator("schema_version")
    @classmethod
    def _known_major(cls, value: str) -> str:
        if value.split(".")[0] != SCHEMA_MAJOR:
            raise UnsupportedSchemaVersion(
                f"schema_version {value!r} is not supported (this consumer reads {SCHEMA_MAJOR}.x)"
            )
        return value


class Event(Versioned):
    """Fields every event carries."""

    event_id: str = Field(default_factory=new_event_id, description="unique; consumers dedup on it")
    document_id: Identifier
    tenant_id: Identifier
    trace_id: str = Field(default_factory=new_event_id)
    occurred_at: datetime = Field(default_factory=utcnow)


class DocumentUploaded(Event):
    """A document's bytes are in the blob store and ready to be chunked.

    `version` is derived from the content (the first 16 hex digits of its sha256), so uploading
    the same bytes again is the same version and re-indexing it changes nothing. Producers may
    leave `sha256` and `version` out; the chunker then derives them from the bytes it reads.
    """

    blob_uri: Annotated[str, Field(min_length=1, description="file:// URI of the raw bytes")]
    filename: Identifier
    content_type: str | None = None
    sha256: Sha256 | None = None
    size_bytes: int | None = Field(default=None, ge=0)
    version: str | None = None
    title: str | None = None
    metadata: Metadata = Field(default_factory=dict)


class DocumentDeleted(Event):
    """A tombstone: remove every version of the document from the index and mark it DELETED.

    Published on `document.uploaded`, after the document's uploads on the same partition, and
    passed on unchanged along `chunks.ready` and `vectors.ready`, so it reaches the indexer after
    every batch of the versions uploaded before it; the indexer announces it on `index.promoted`.
    """

    kind: Literal["deleted"] = "deleted"
    generation: int = Field(
        default=1, ge=1, description="the index generation it applies to (the chunker's stamp)"
    )


def _kind(value: Any) -> Any:
    return value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)


class TenantUpload(Versioned):
    """What an outside producer publishes on its tenant's upload topic (`topics.tenant_uploads`)
    to add or replace a document: no tenant and no document id, which the ingest service's
    gateway derives from the topic and the file name, so a producer can name neither another
    tenant nor another tenant's document. The gateway passes it on as a `DocumentUploaded`."""

    kind: Literal["upload"] = "upload"
    blob_uri: Annotated[str, Field(min_length=1, description="file:// URI of the raw bytes")]
    filename: Identifier
    content_type: str | None = None
    title: str | None = None
    metadata: Metadata = Field(default_factory=dict)
    trace_id: str | None = None

    def inside(self, tenant_id: str) -> DocumentUploaded:
        """The upload as the pipeline reads it, bound to `tenant_id`."""
        extra = {"trace_id": self.trace_id} if self.trace_id else {}
        return DocumentUploaded(
            document_id=document_id(tenant_id, self.filename),
            tenant_id=tenant_id,
            blob_uri=self.blob_uri,
            filename=self.filename,
            content_type=self.content_type,
            title=self.title,
            metadata=self.metadata,
            **extra,
        )


class TenantDelete(Versioned):
    """What an outside producer publishes on its tenant's upload topic to delete a document of
    its tenant, named by its file name. The gateway passes it on as a `DocumentDeleted`."""

    kind: Literal["deleted"] = "deleted"
    filename: Identifier
    trace_id: str | None = None

    def inside(self, tenant_id: str) -> DocumentDeleted:
        extra = {"trace_id": self.trace_id} if self.trace_id else {}
        return DocumentDeleted(
            document_id=document_id(tenant_id, self.filename), tenant_id=tenant_id, **extra
        )


# What a tenant's upload topic holds: an upload (`kind` may be left out) or a deletion.
TenantUploadOrDelete: TypeAlias = Annotated[
    Annotated[TenantUpload, Tag("upload")] | Annotated[TenantDelete, Tag("deleted")],
    Discriminator(lambda value: "deleted" if _kind(value) == "deleted" else "upload"),
]


class Chunk(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    chunk_id: str = Field(description="uuid5 of document id, version and ordinal")
    ordinal: int = Field(ge=0)
    text: str
    token_count: int = Field(ge=0)


class DocumentRef(Event):
    """The parts of a document that travel with its chunks and vectors into the index payload."""

    version: str
    source: str = Field(description="where the document came from: its file name")
    title: str | None = None
    metadata: Metadata = Field(default_factory=dict)
    total_chunks: int = Field(ge=1, description="chunks of this document version in all batches")
    batch: int = Field(ge=0, description="index of this batch among the document's batches")
    uploaded_at: datetime = Field(description="when the upload entered the bus, for latency")
    generation: int = Field(default=1, ge=1, description="the index generation it is built for")
    quiet: bool = Field(
        default=False,
        description="built for a generation that does not serve: stages keep its progress off "
        "`document.status`",
    )


class ChunksReady(DocumentRef):
    """One batch of a document version's chunks (a document may span several batches)."""

    chunks: list[Chunk] = Field(min_length=1)
    embed_model: str | None = Field(
        default=None,
        description="the embedding model its generation is built with (None: the embedder's own)",
    )


class EmbeddedChunk(Chunk):
    vector: str = Field(description="packed little-endian float32, base64 (contracts.vectors)")


class VectorsReady(DocumentRef):
    """One batch of embedded chunks, the batch of the `chunks.ready` event it came from."""

    model: str
    dimensions: int = Field(gt=0)
    chunks: list[EmbeddedChunk] = Field(min_length=1)


class IndexPromoted(Event):
    """Every chunk of a document version is visible under the serving alias."""

    version: str
    alias: str
    collection: str
    generation: int
    points: int = Field(ge=0)
    replaced_versions: int = Field(default=0, ge=0, description="older versions' points removed")
    uploaded_at: datetime


class IndexSwapped(Versioned):
    """The serving name now points at another generation (a rebuild's swap, or a rollback):
    every answer cached before is stale. On `index.promoted`, keyed by the alias."""

    kind: Literal["swapped"] = "swapped"
    event_id: str = Field(default_factory=new_event_id)
    occurred_at: datetime = Field(default_factory=utcnow)
    alias: str
    collection: str
    generation: int = Field(ge=1)
    previous: int = Field(ge=0, description="the generation that served before")
    model: str | None = Field(default=None, description="the embedding model it was built with")

    @property
    def key(self) -> str:
        return self.alias


GenerationState = Literal["building", "serving", "kept", "retired"]


class GenerationPlan(Versioned):
    """What one index generation is built with, and where it stands. The indexer, which owns
    the index, writes one to the compacted `index.generations` (key: the generation number)
    whenever a generation is planned, swapped or dropped; every chunker follows the topic and
    runs one consumer group per generation that is not retired, replaying `document.uploaded`
    from its start into that generation."""

    alias: str
    generation: int = Field(ge=1)
    plan_id: str = Field(min_length=1, description="unique per plan: a consumer group's name")
    state: GenerationState
    embed_model: str | None = Field(
        default=None, description="the embedding model (None: the embedder's configured one)"
    )
    chunk_tokens: int | None = Field(default=None, ge=1, description="None: the chunker's own")
    overlap: int | None = Field(default=None, ge=0, description="None: the chunker's own")
    occurred_at: datetime = Field(default_factory=utcnow)

    @property
    def key(self) -> str:
        return str(self.generation)

    @property
    def consumer_group(self) -> str:
        """The chunker's consumer group for this generation (generation 1 keeps the chunker's
        original group, so an existing deployment resumes where it was)."""
        if self.generation == 1:
            return CONSUMER_GROUPS["chunker"]
        return f"ragbus-chunker-g{self.generation}-{self.plan_id[:12]}"


class DocumentState(StrEnum):
    RECEIVED = "RECEIVED"
    CHUNKING = "CHUNKING"
    EMBEDDING = "EMBEDDING"
    INDEXING = "INDEXING"
    INDEXED = "INDEXED"
    FAILED = "FAILED"
    DELETED = "DELETED"


Stage = Literal["ingest", "chunker", "embedder", "indexer", "status"]


class StatusUpdate(Event):
    """A stage reports progress on a document; the status service folds these into state.

    Written to `document.status` (compacted, key = document id) by the stage that made the change.
    """

    kind: Literal["update"] = "update"
    stage: Stage
    state: DocumentState
    version: str | None = None
    filename: str | None = None
    reason: str | None = None
    chunks: int | None = Field(default=None, ge=0, description="total chunks, once known")
    indexed_chunks: int | None = Field(default=None, ge=0)


class DeadLetter(BaseModel):
    """A message a stage could not process, kept with why, so it can be replayed after a fix."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: str = SCHEMA_VERSION
    event_id: str = Field(default_factory=new_event_id)
    occurred_at: datetime = Field(default_factory=utcnow)
    topic: str
    partition: int
    offset: int
    key: str | None = None
    payload: str = Field(description="the original message value, as `payload_encoding` says")
    payload_encoding: Literal["utf-8", "base64"] = Field(
        default="utf-8", description="UTF-8 text when the value was valid UTF-8, else base64"
    )
    payload_truncated: bool = Field(
        default=False,
        description="the value was too large for a letter: `payload` holds its beginning only",
    )
    payload_bytes: int | None = Field(default=None, ge=0, description="the value's full size")
    payload_sha256: Sha256 | None = None
    error: str
    error_type: str
    stage: Stage
    attempts: int = Field(ge=1)
    document_id: str | None = None
    tenant_id: str | None = None


class Turn(BaseModel):
    """One question of a conversation and the answer it got."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    question: str
    answer: str
    asked_at: datetime = Field(default_factory=utcnow)


def conversation_key(tenant_id: str, conversation_id: str) -> str:
    """The message key of a conversation: `<tenant>/<conversation id>`.

    The tenant is percent-encoded, so it holds no `/` and two tenants' conversations can never
    share a key (compaction keeps one record per key).
    """
    return f"{quote(tenant_id, safe='')}/{conversation_id}"


class Conversation(Versioned):
    """The latest turns of one conversation, kept by the query service on the compacted
    `query.conversations` topic, keyed `<tenant_id, percent-encoded>/<conversation_id>`.

    Each record is the whole conversation, oldest turn first, so the newest record of a key is
    all a replica needs and compaction may drop the older ones. Not an `Event`: a conversation
    is not about a document.
    """

    conversation_id: Identifier
    tenant_id: Identifier
    turns: list[Turn] = Field(description="the last turns, oldest first")
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def key(self) -> str:
        return conversation_key(self.tenant_id, self.conversation_id)


def _deleted_or_main(value: Any) -> str:
    kind = _kind(value)
    return kind if kind in ("deleted", "swapped") else "main"


_DELETED = Annotated[DocumentDeleted, Tag("deleted")]
# What each topic that carries tombstones holds: its own event, or a `DocumentDeleted`
# (`TypeAdapter(UploadOrDelete).validate_json(…)` reads one).
UploadOrDelete: TypeAlias = Annotated[
    Annotated[DocumentUploaded, Tag("main")] | _DELETED, Discriminator(_deleted_or_main)
]
ChunksOrDelete: TypeAlias = Annotated[
    Annotated[ChunksReady, Tag("main")] | _DELETED, Discriminator(_deleted_or_main)
]
VectorsOrDelete: TypeAlias = Annotated[
    Annotated[VectorsReady, Tag("main")] | _DELETED, Discriminator(_deleted_or_main)
]
PromotedOrDelete: TypeAlias = Annotated[
    Annotated[IndexPromoted, Tag("main")] | _DELETED | Annotated[IndexSwapped, Tag("swapped")],
    Discriminator(_deleted_or_main),
]


EVENT_TYPES: dict[str, type[BaseModel]] = {
    model.__name__: model
    for model in (
        TenantUpload,
        TenantDelete,
        DocumentUploaded,
        DocumentDeleted,
        ChunksReady,
        VectorsReady,
        IndexPromoted,
        IndexSwapped,
        GenerationPlan,
        StatusUpdate,
        DeadLetter,
        Conversation,
    )
}


def describe_validation_error(exc: Exception) -> str:
    """A one-line, human-readable reason for a rejected event."""
    errors: list[dict[str, Any]] = getattr(exc, "errors", lambda: [])()
    if not errors:
        return str(exc)
    parts = []
    for error in errors[:5]:
        where = ".".join(str(part) for part in error.get("loc", ())) or "event"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "invalid event: " + "; ".join(parts)
