"""A stage's subscriber, stated once: typed events in, decided outcomes out.

`subscribe` registers a FastStream batch subscriber with the stage's consumer group, ack policy,
assignor and offset reset, and a decoder that validates every record against the topic's
contract: an undecodable record becomes a dead letter (and its document FAILED) before the
handler runs, so the handler takes typed events (`list[VectorsOrDelete]`), and the generated
AsyncAPI document shows the real payload of every channel.

A stage's rules are plain async functions that take typed events and ports and return an
`Outcome`: the events to publish, in order, and the events to dead-letter with a reason. The
subscriber hands the outcome to `deliver`; the offset is committed only after that.
"""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby
from typing import Any, Literal

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.subscriber.usecase import BatchSubscriber
from faststream.message import StreamMessage
from pydantic import BaseModel, TypeAdapter

from contracts.events import DocumentState, Event, Stage, StatusUpdate
from contracts.topics import DOCUMENT_STATUS
from ragbus import metrics
from ragbus.bus import ASSIGNMENT, Bus, Delivery, Record, status_update

# Where the decoder leaves a message's valid records beside its events, for `deliveries`.
_DELIVERIES = "ragbus_deliveries"


@dataclass(frozen=True)
class Rejection:
    """An event the stage refuses for good: it is dead-lettered with `reason`, its document
    FAILED."""

    event: BaseModel
    reason: str
    error_type: str
    version: str | None = None
    quiet: bool = False


@dataclass
class Outcome:
    """What a handler decided: events to publish, in order, and events to dead-letter. A
    `quiet` outcome (or a report about a `quiet` event: one built for an index generation that
    does not serve) keeps its progress off `document.status`; its dead letters are kept all the
    same, without marking the document FAILED."""

    stage: Stage
    quiet: bool = False
    published: list[tuple[str, BaseModel]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    def publish(self, topic: str, *events: BaseModel) -> None:
        self.published.extend((topic, event) for event in events)

    def report(self, about: Event, state: DocumentState, **fields: Any) -> StatusUpdate:
        """A status update about `about`'s document, published in its place among the events
        (a stage reports before its output, so updates reach `document.status` in order)."""
        update = status_update(about, self.stage, state, **fields)
        if not self._quiet(about):
            self.publish(DOCUMENT_STATUS, update)
        return update

    def _quiet(self, about: BaseModel) -> bool:
        return self.quiet or bool(getattr(about, "quiet", False))

    def reject(
        self, event: BaseModel, reason: str, error_type: str, version: str | None = None
    ) -> None:
        self.rejected.append(
            Rejection(event, reason, error_type, version, quiet=self._quiet(event))
        )


def deliveries(message: KafkaMessage) -> list[Delivery[Any]]:
    """The valid records of a message with their events, in order."""
    found: list[Delivery[Any]] = getattr(message, _DELIVERIES)
    return found


def subscribe(
    broker: KafkaBroker,
    topic: str,
    payload: Any,
    *,
    stage: str,
    bus: Bus | None,
    group: str | None,
    max_records: int,
    description: str,
    title: str | None = None,
    max_poll_interval_ms: int = 5 * 60 * 1000,
    offset_reset: Literal["earliest", "latest"] = "earliest",
    persistent: bool = True,
    stamp: Callable[[Record, Any], Any] | None = None,
    pattern: bool = False,
    read: Callable[[Record], Awaitable[Any]] | None = None,
) -> BatchSubscriber:
    """A batch subscriber of `topic` whose handler takes `list[payload]` and the message.

    With a `group`, offsets are committed only after the handler returned (an error rewinds
    every partition of the batch for a redelivery), partitions are assigned sticky, and a new
    group starts at the earliest record (`offset_reset`). Without one (every replica reads the
    whole topic, e.g. to fold a compacted topic), nothing is committed. An undecodable record is
    dead-lettered through `bus`, or, without one, counted as invalid and skipped. One made while
    the broker runs is not `persistent`: its caller starts and stops it. `stamp` gives each
    decoded event what its record adds (the broker's append time). With `pattern`, `topic` is a
    regular expression: every topic it matches, as topics appear. `read` turns a record into
    its event, or `INVALID` once it has dead-lettered it (default: the payload's contract, an
    undecodable record dead-lettered through `bus`).
    """
    adapter: TypeAdapter[Any] = TypeAdapter(payload)

    async def decode(message: StreamMessage[Any]) -> list[Any]:
        records: Sequence[Record] = message.raw_message
        valid = []
        for record in records:
            event = await (read(record) if read else _decode(record, adapter, stage, bus))
            if event is not INVALID:
                valid.append(Delivery(record, event if stamp is None else stamp(record, event)))
        setattr(message, _DELIVERIES, valid)
        return [delivery.event for delivery in valid]

    grouped: dict[str, Any] = (
        {
            "group_id": group,
            "ack_policy": AckPolicy.NACK_ON_ERROR,
            "partition_assignment_strategy": ASSIGNMENT,
            "max_poll_interval_ms": max_poll_interval_ms,
        }
        if group
        else {"group_id": None, "ack_policy": AckPolicy.MANUAL}
    )
    subscriber: BatchSubscriber = broker.subscriber(
        *(() if pattern else (topic,)),
        pattern=topic if pattern else None,
        batch=True,
        max_records=max_records,
        auto_offset_reset=offset_reset,
        decoder=decode,
        title=title or f"{stage}:{topic}",
        description=description,
        persistent=persistent,
        **grouped,
    )
    return subscriber


INVALID = object()
# aiokafka's `timestamp_type` of a record the broker stamped as it appended it.
LOG_APPEND_TIME = 1


def appended_at(record: Record) -> datetime | None:
    """When the broker appended the record, if its topic has the broker stamp records."""
    if record.timestamp_type != LOG_APPEND_TIME:
        return None
    return datetime.fromtimestamp(record.timestamp / 1000, UTC)


async def _decode(record: Record, adapter: TypeAdapter[Any], stage: str, bus: Bus | None) -> Any:
    """The record's event, or `INVALID`. A record without a value (a compacted topic's
    tombstone) is None where the payload admits None."""
    if bus is not None:
        event = await bus.decode(record, adapter)
        return INVALID if event is None else event
    try:
        if record.value is None:
            return adapter.validate_python(None)
        return adapter.validate_json(record.value)
    except ValueError:
        metrics.MESSAGES.labels(stage, record.topic, "invalid").inc()
        return INVALID


async def deliver(bus: Bus, outcome: Outcome, batch: Sequence[Delivery[Any]]) -> None:
    """Publish what `outcome` decided, in order (consecutive events of one topic together, so
    the producer batches them), then dead-letter its rejections with their records."""
    for topic, events in groupby(outcome.published, key=lambda published: published[0]):
        await bus.publish(topic, [event for _, event in events])
    records = {id(delivery.event): delivery.record for delivery in batch}
    for rejection in outcome.rejected:
        await bus.dead_letter(
            records[id(rejection.event)],
            rejection.reason,
            rejection.error_type,
            version=rejection.version,
            report=not rejection.quiet,
        )


async def handle(
    bus: Bus, message: KafkaMessage, rule: Callable[[list[Any]], Awaitable[Outcome]]
) -> None:
    """Apply a stage's `rule` to the message's events and deliver its outcome, guarded (a
    batch that failed before is retried one event at a time, a poison one dead-lettered)."""

    async def run(batch: Sequence[Delivery[Any]]) -> None:
        await deliver(bus, await rule([delivery.event for delivery in batch]), batch)

    await bus.process(deliveries(message), run)
