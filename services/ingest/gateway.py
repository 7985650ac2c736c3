"""The gateway of outside producers: every tenant's upload topic in, `document.uploaded` out.

Only a tenant's own principal may write its upload topic (`tenant.<tenant>.uploads`), and only
the ingest service may write `document.uploaded`: so the tenant of an event is the topic it came
in, never a field its producer wrote, and its document id is derived from that tenant and the
file name, so no producer can name another tenant's document. A record that is neither a
`TenantUpload` nor a `TenantDelete` is dead-lettered (to `tenant.uploads.dlq`, which operators
read) and, when its file name can be read, its document FAILED with the reason, in the topic's
tenant only.
"""

import uuid
from typing import Any

import orjson
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import TypeAdapter, ValidationError

from contracts.events import (
    DocumentDeleted,
    DocumentState,
    DocumentUploaded,
    TenantUploadOrDelete,
    UploadOrDelete,
    describe_validation_error,
)
from contracts.ids import document_id
from contracts.topics import (
    DOCUMENT_UPLOADED,
    GATEWAY_GROUP,
    TENANT_UPLOADS_SUBSCRIPTION,
    tenant_of_topic,
)
from ragbus.bus import Bus, Record
from ragbus.stage import INVALID, Outcome, handle, subscribe

from .transform import clean_filename

ADAPTER: TypeAdapter[Any] = TypeAdapter(TenantUploadOrDelete)
# A record redelivered is the same event: its id is named by the record's position.
RECORDS = uuid.UUID("7c3e9a52-1f4b-4d8e-b6a0-5e2d9f1c7a34")


async def read(bus: Bus, record: Record) -> DocumentUploaded | DocumentDeleted | Any:
    """The record as the pipeline's event, bound to its topic's tenant; or `INVALID`, once
    it is dead-lettered."""
    tenant = tenant_of_topic(record.topic)
    try:
        if tenant is None:
            raise ValueError(f"{record.topic!r} is not a tenant's upload topic")
        outside = ADAPTER.validate_json(record.value or b"")
        filename = clean_filename(outside.filename)
    except ValueError as exc:
        reason = describe_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
        named = _filename(record)
        await bus.dead_letter(
            record,
            reason,
            type(exc).__name__,
            identity={
                "tenant_id": tenant,
                "document_id": document_id(tenant, named) if tenant and named else None,
            },
        )
        return INVALID
    event_id = str(uuid.uuid5(RECORDS, f"{record.topic}/{record.partition}/{record.offset}"))
    inside = outside.model_copy(update={"filename": filename}).inside(tenant)
    return inside.model_copy(update={"event_id": event_id})


def _filename(record: Record) -> str | None:
    """The file name a record that is no valid event gives, if it can be read and used."""
    try:
        value = orjson.loads(record.value or b"")
        return clean_filename(value["filename"]) if isinstance(value, dict) else None
    except (ValueError, KeyError, TypeError):
        return None


async def admit(events: list[DocumentUploaded | DocumentDeleted]) -> Outcome:
    """Each upload RECEIVED, as over HTTP, then every event onto `document.uploaded`."""
    outcome = Outcome("ingest")
    for event in events:
        if isinstance(event, DocumentUploaded):
            outcome.report(event, DocumentState.RECEIVED, filename=event.filename)
        outcome.publish(DOCUMENT_UPLOADED, event)
    return outcome


def register(broker: KafkaBroker, bus: Bus) -> None:
    """Subscribe the gateway to every tenant's upload topic, in one consumer group."""

    async def read_record(record: Record) -> Any:
        return await read(bus, record)

    @subscribe(
        broker,
        TENANT_UPLOADS_SUBSCRIPTION,
        TenantUploadOrDelete,
        stage="ingest",
        bus=bus,
        group=GATEWAY_GROUP,
        max_records=100,
        pattern=True,
        read=read_record,
        title="ingest:gateway",
        description="Outside producers' uploads and deletions (`TenantUpload`, `TenantDelete`), "
        "each passed on bound to its topic's tenant as the event shown.",
    )
    async def on_tenant_uploads(events: list[UploadOrDelete], message: KafkaMessage) -> None:
        await handle(bus, message, admit)
