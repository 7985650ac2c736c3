"""The Kafka side of every stage: the broker factory, publishing, status reports and dead letters.

A stage's subscriber decodes a record with `Bus.decode` (a bad record becomes a dead letter and a
FAILED status, never an exception), runs its pure transform, publishes the outputs with
`Bus.publish` and returns; the subscriber's ack policy commits the offset only after that.
"""

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias, TypeVar

import orjson
from aiokafka.structs import ConsumerRecord
from faststream.kafka import KafkaBroker
from pydantic import BaseModel, ValidationError

from contracts.events import (
    DeadLetter,
    DocumentState,
    Event,
    Stage,
    StatusUpdate,
    describe_validation_error,
)
from contracts.topics import DOCUMENT_STATUS, MAX_MESSAGE_BYTES, dlq
from ragbus import metrics
from ragbus.settings import CommonSettings

log = logging.getLogger(__name__)

E = TypeVar("E", bound=BaseModel)
Record: TypeAlias = "ConsumerRecord[bytes | None, bytes | None]"


def create_broker(settings: CommonSettings, client_id: str) -> KafkaBroker:
    """A broker whose producer waits for the write to be durable and never duplicates on retry."""
    return KafkaBroker(
        settings.kafka_bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        max_request_size=MAX_MESSAGE_BYTES,
        linger_ms=5,
        logger=logging.getLogger(f"ragbus.{client_id}.broker"),
        log_level=logging.DEBUG,
        graceful_timeout=30.0,
    )


def encode(event: BaseModel) -> bytes:
    return event.model_dump_json().encode()


class Bus:
    """What a stage uses to talk to the bus."""

    def __init__(
        self,
        broker: KafkaBroker,
        stage: Stage,
        outputs: Mapping[str, type[BaseModel]] | None = None,
        consumes: Sequence[str] = (),
    ) -> None:
        """Declare the stage's publishers: its `outputs`, status updates, and the DLQ of each
        topic it `consumes` (declared, they appear in the AsyncAPI document)."""
        self.broker = broker
        self.stage = stage
        declared = {
            **(outputs or {}),
            DOCUMENT_STATUS: StatusUpdate,
            **{dlq(topic): DeadLetter for topic in consumes},
        }
        self._publishers = {
            topic: broker.publisher(
                topic, title=f"{stage}:{topic}", schema=model, description=model.__doc__
            )
            for topic, model in declared.items()
        }

    async def publish(self, topic: str, events: Sequence[BaseModel]) -> None:
        """Publish `events` to `topic` (one of the declared ones) and wait until the broker
        has every one of them.

        The sends run concurrently so the producer batches them; nothing here depends on the
        order of one call's events (each carries its batch number).
        """
        publisher = self._publishers[topic]
        await asyncio.gather(
            *(
                publisher.publish(
                    encode(event),
                    key=_key(event),
                    headers={"type": type(event).__name__},
                )
                for event in events
            )
        )

    async def report(self, about: Event, state: DocumentState, **fields: Any) -> None:
        """Publish a status update about the document `about` refers to."""
        update = StatusUpdate(
            document_id=about.document_id,
            tenant_id=about.tenant_id,
            trace_id=about.trace_id,
            stage=self.stage,
            state=state,
            **{"version": getattr(about, "version", None), **fields},
        )
        await self.publish(DOCUMENT_STATUS, [update])

    async def decode(self, record: Record, model: type[E]) -> E | None:
        """Validate a record as `model`; dead-letter it and return None when it is not one."""
        try:
            if record.value is None:
                raise ValueError("empty message (no value)")
            return model.model_validate_json(record.value)
        except (ValidationError, ValueError) as exc:
            reason = (
                describe_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
            )
            await self.dead_letter(record, reason, type(exc).__name__)
            return None

    async def dead_letter(
        self,
        record: Record,
        reason: str,
        error_type: str,
        attempts: int = 1,
        version: str | None = None,
    ) -> None:
        """Keep a record the stage cannot process in its DLQ and mark its document FAILED."""
        ids = _identity(record)
        letter = DeadLetter(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key.decode(errors="replace") if record.key else None,
            payload=(record.value or b"").decode(errors="backslashreplace"),
            error=reason,
            error_type=error_type,
            stage=self.stage,
            attempts=attempts,
            **ids,
        )
        await self.publish(dlq(record.topic), [letter])
        metrics.DEAD_LETTERS.labels(self.stage, record.topic).inc()
        metrics.MESSAGES.labels(self.stage, record.topic, "dead_letter").inc()
        log.warning(
            "dead-lettered a message: %s",
            reason,
            extra={"stage": self.stage, "topic": record.topic, "error": reason, **ids},
        )
        if ids["document_id"] and ids["tenant_id"]:
            update = StatusUpdate(
                document_id=ids["document_id"],
                tenant_id=ids["tenant_id"],
                stage=self.stage,
                state=DocumentState.FAILED,
                version=version or _field(record, "version"),
                reason=f"{self.stage}: {reason}",
            )
            await self.publish(DOCUMENT_STATUS, [update])


def _key(event: BaseModel) -> bytes:
    """Messages are keyed by document id, so one document's events stay on one partition."""
    document_id = getattr(event, "document_id", None) or getattr(event, "event_id", "")
    return str(document_id).encode()


def _field(record: Record, name: str) -> str | None:
    try:
        value = orjson.loads(record.value or b"null")
    except orjson.JSONDecodeError:
        return None
    field = value.get(name) if isinstance(value, dict) else None
    return field if isinstance(field, str) and 0 < len(field) <= 256 else None


def _identity(record: Record) -> dict[str, str | None]:
    """The document and tenant a record is about, as far as they can be read from it."""
    key = record.key.decode(errors="replace") if record.key else None
    return {
        "document_id": _field(record, "document_id") or key,
        "tenant_id": _field(record, "tenant_id"),
    }
