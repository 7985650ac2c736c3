"""The Kafka side of every stage: the broker factory, publishing, status reports and dead letters.

A stage's subscriber decodes a record with `Bus.decode` (a bad record becomes a dead letter and a
FAILED status, never an exception), runs its pure transform, publishes the outputs with
`Bus.publish` and returns; the subscriber's ack policy commits the offset only after that. The
work runs inside `Bus.guarded`, which tells transient failures (retried by redelivery for as long
as they last) from a poison message (dead-lettered after `max_attempts`), so no message stalls
its partition forever and none is dropped.
"""

import asyncio
import base64
import logging
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

import orjson
from aiokafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    NotLeaderForPartitionError,
    RequestTimedOutError,
)
from aiokafka.structs import ConsumerRecord
from faststream.kafka import KafkaBroker
from pydantic import BaseModel, TypeAdapter, ValidationError

from contracts.events import (
    DeadLetter,
    DocumentState,
    Event,
    Stage,
    StatusUpdate,
    describe_validation_error,
)
from contracts.ids import sha256_of
from contracts.topics import DOCUMENT_STATUS, MAX_MESSAGE_BYTES, dlq
from ragbus import metrics
from ragbus.redact import public
from ragbus.retry import retry
from ragbus.settings import KafkaSettings

log = logging.getLogger(__name__)

E = TypeVar("E")
Record: TypeAlias = "ConsumerRecord[bytes | None, bytes | None]"

# Stage groups keep their partitions across a rebalance where they can (aiokafka speaks only the
# eager protocol, so there is no cooperative-sticky; sticky is the closest). One assignor only:
# aiokafka sends a JoinGroup per listed assignor, each naming the protocols listed so far
# (aio-libs/aiokafka#1168), and a member whose second request changes its protocols restarts
# the rebalance it just joined; members starting together then rebalanced for minutes
# (tests/faults/test_group_join.py). A group still on the old default (round robin) must be
# drained before members with this one join: the broker refuses a group with no common protocol.
ASSIGNMENT = (StickyPartitionAssignor,)
# Failures of the broker connection itself; a stage adds its backends' (TEI, Qdrant, …).
BROKER_TRANSIENT: tuple[type[BaseException], ...] = (
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    NotLeaderForPartitionError,
    RequestTimedOutError,
)
# How long a stage waits before a message that met a transient failure is redelivered.
TRANSIENT_PAUSE_S = 5.0
# A letter stays well inside the message size limit: a value too large for one keeps its
# beginning (with its size and sha256); keys and reasons are bounded like identifiers.
MAX_LETTER_BYTES = MAX_MESSAGE_BYTES - 64 * 1024
KEPT_PAYLOAD_BYTES = 64 * 1024
MAX_KEY_CHARS = 256
MAX_REASON_CHARS = 4096
LETTERS = uuid.UUID("0b5d2f64-3c1e-4f0a-9a57-6f1d8c2e4b90")


@dataclass(frozen=True)
class Delivery(Generic[E]):
    """A valid event and the record it came in."""

    record: Record
    event: E


def status_update(about: Event, stage: Stage, state: DocumentState, **fields: Any) -> StatusUpdate:
    """What `stage` says of the document `about` refers to."""
    return StatusUpdate(
        document_id=about.document_id,
        tenant_id=about.tenant_id,
        trace_id=about.trace_id,
        stage=stage,
        state=state,
        **{"version": getattr(about, "version", None), **fields},
    )


def create_broker(
    settings: KafkaSettings, client_id: str, metadata_max_age_ms: int = 5 * 60 * 1000
) -> KafkaBroker:
    """A broker whose producer waits for the write to be durable and never duplicates on retry
    (`metadata_max_age_ms`: how soon a pattern subscription sees a new topic)."""
    return KafkaBroker(
        settings.kafka_bootstrap,
        security=settings.kafka_security(),
        metadata_max_age_ms=metadata_max_age_ms,
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
        transient: tuple[type[BaseException], ...] = (),
        max_attempts: int = 3,
    ) -> None:
        """Declare the stage's publishers: its `outputs`, status updates, and the DLQ of each
        topic it `consumes` (declared, they appear in the AsyncAPI document). `transient`
        errors of the stage's backends are retried for as long as they last; any other error
        of a message is retried `max_attempts` times before the message is dead-lettered."""
        self.broker = broker
        self.stage = stage
        self.transient = BROKER_TRANSIENT + transient
        self.max_attempts = max_attempts
        # Failed attempts per record position, in this process; cleared when a record succeeds.
        self._failures: dict[tuple[str, int, int], int] = {}
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

        async def send() -> None:
            await asyncio.gather(
                *(
                    publisher.publish(
                        encode(event), key=_key(event), headers={"type": type(event).__name__}
                    )
                    for event in events
                )
            )

        # A resend may repeat events the broker already had: every consumer is idempotent.
        await retry(send, transient=BROKER_TRANSIENT, what=f"publishing to {topic}")

    async def report(self, about: Event, state: DocumentState, **fields: Any) -> StatusUpdate:
        """Publish a status update about the document `about` refers to; return it."""
        update = status_update(about, self.stage, state, **fields)
        await self.publish(DOCUMENT_STATUS, [update])
        return update

    async def decode(self, record: Record, adapter: TypeAdapter[E]) -> E | None:
        """Validate a record with `adapter`; dead-letter it and return None when it fails."""
        try:
            if record.value is None:
                raise ValueError("empty message (no value)")
            return adapter.validate_json(record.value)
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
        report: bool = True,
        identity: Mapping[str, str | None] | None = None,
    ) -> None:
        """Keep a record the stage cannot process in its DLQ and mark its document FAILED
        (unless not to `report`: a record built for an index generation that does not serve).
        The letter keeps the whole reason for operators; the document's owner reads it without
        internal URLs, addresses and paths (`ragbus.redact`). `identity` (the document and
        tenant) replaces what the record says of itself, when its producer may not be trusted
        to name them."""
        ids = dict(identity) if identity is not None else _identity(record)
        value = record.value or b""
        letter = DeadLetter(
            # The same record dead-lettered again (a replaying consumer) is the same letter.
            event_id=str(
                uuid.uuid5(LETTERS, f"{self.stage}/{'/'.join(map(str, _position(record)))}")
            ),
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key.decode(errors="replace")[:MAX_KEY_CHARS] if record.key else None,
            **_payload(value),
            error=reason[:MAX_REASON_CHARS],
            error_type=error_type,
            stage=self.stage,
            attempts=attempts,
            **ids,
        )
        if len(encode(letter)) > MAX_LETTER_BYTES:
            letter = letter.model_copy(
                update={
                    **_payload(value[:KEPT_PAYLOAD_BYTES]),
                    "payload_truncated": True,
                    "payload_bytes": len(value),
                    "payload_sha256": sha256_of(value),
                }
            )
        await self.publish(dlq(record.topic), [letter])
        metrics.DEAD_LETTERS.labels(self.stage, record.topic).inc()
        metrics.MESSAGES.labels(self.stage, record.topic, "dead_letter").inc()
        log.warning(
            "dead-lettered a message: %s",
            reason,
            extra={"stage": self.stage, "topic": record.topic, "error": reason, **ids},
        )
        if report and ids["document_id"] and ids["tenant_id"]:
            update = StatusUpdate(
                document_id=ids["document_id"],
                tenant_id=ids["tenant_id"],
                stage=self.stage,
                state=DocumentState.FAILED,
                version=version or _field(record, "version"),
                reason=f"{self.stage}: {public(reason)}"[:MAX_REASON_CHARS],
            )
            await self.publish(DOCUMENT_STATUS, [update])

    async def process(
        self,
        batch: Sequence["Delivery[E]"],
        handle: Callable[[Sequence["Delivery[E]"]], Awaitable[None]],
    ) -> None:
        """Run `handle` on a batch of deliveries, guarded; a batch that failed before runs one
        delivery at a time, so a poison record is found and dead-lettered alone."""
        runs = [[item] for item in batch] if self.failed_before(batch) else [batch]
        for run in runs:
            async with self.guarded([item.record for item in run]):
                await handle(run)

    def failed_before(self, batch: Sequence["Delivery[Any]"]) -> bool:
        """Whether any record of `batch` failed here before: a batch that failed is retried one
        record at a time, so only the poison record is dead-lettered."""
        return any(_position(item.record) in self._failures for item in batch)

    @asynccontextmanager
    async def guarded(self, records: Sequence[Record]) -> AsyncIterator[None]:
        """Run the handling of `records`, deciding what a failure means.

        A transient error is raised again after a pause: the message is redelivered until the
        backend is back (the stage's lag grows meanwhile; nothing fails). Any other error is
        raised again, for a redelivery, until one record has failed `max_attempts` times; then
        that record is dead-lettered with its document marked FAILED, and the stage moves on.
        A batch's failure counts against each of its records.
        """
        try:
            yield
        except self.transient as exc:
            log.warning(
                "transient failure, the message will be redelivered: %s",
                exc,
                extra={"stage": self.stage, "error": str(exc)},
            )
            await asyncio.sleep(random.uniform(0.5, 1.0) * TRANSIENT_PAUSE_S)
            raise
        except Exception as exc:
            attempts = 0
            for record in records:
                attempts = self._failures[_position(record)] = (
                    self._failures.get(_position(record), 0) + 1
                )
            if len(records) != 1 or attempts < self.max_attempts:
                log.exception(
                    "handling failed (attempt %d of %d), the message will be redelivered",
                    attempts,
                    self.max_attempts,
                    extra={"stage": self.stage},
                )
                await asyncio.sleep(random.uniform(0, 0.5 * 2**attempts))
                raise
            (record,) = records
            await self._give_up(record, exc, attempts)
        else:
            for record in records:
                self._failures.pop(_position(record), None)

    async def _give_up(self, record: Record, exc: Exception, attempts: int) -> None:
        """Dead-letter a record that failed its attempts. Should even that fail for a reason
        that is not transient, the record is logged in full at ERROR and skipped: a poison
        message must never loop."""
        try:
            await self.dead_letter(
                record, f"{type(exc).__name__}: {exc}", type(exc).__name__, attempts
            )
        except self.transient:
            raise  # the count stays: the next delivery dead-letters at once
        except Exception:
            metrics.MESSAGES.labels(self.stage, record.topic, "undeliverable").inc()
            log.exception(
                "could not dead-letter %s/%d/%d after %d attempts; skipped: %r",
                record.topic,
                record.partition,
                record.offset,
                attempts,
                record.value,
                extra={"stage": self.stage, "error": str(exc)},
            )
        del self._failures[_position(record)]


def _position(record: Record) -> tuple[str, int, int]:
    return record.topic, record.partition, record.offset


def _payload(value: bytes) -> dict[str, str]:
    """The original value, kept byte for byte: as text when it is UTF-8, else as base64."""
    try:
        return {"payload": value.decode(), "payload_encoding": "utf-8"}
    except UnicodeDecodeError:
        return {"payload": base64.b64encode(value).decode(), "payload_encoding": "base64"}


def _key(event: BaseModel) -> bytes:
    """Messages are keyed by document id, so one document's events stay on one partition; a
    record about no document by its own `key` (a generation plan: compaction keeps one per
    generation), else its event id."""
    key = (
        getattr(event, "document_id", None)
        or getattr(event, "key", None)
        or getattr(event, "event_id", "")
    )
    return str(key).encode()


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
    usable_key = key if key and len(key) <= MAX_KEY_CHARS else None
    return {
        "document_id": _field(record, "document_id") or usable_key,
        "tenant_id": _field(record, "tenant_id"),
    }
