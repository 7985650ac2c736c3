"""`ragbus.stage.subscribe`'s typed decoding and `handle`/`deliver`, with FastStream's in-memory
TestKafkaBroker (the redelivery of a failed batch on a real broker is in test_stage.py)."""

from typing import Any

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from prometheus_client import REGISTRY
from pydantic import BaseModel

from contracts.events import (
    DeadLetter,
    DocumentDeleted,
    DocumentState,
    DocumentUploaded,
    StatusUpdate,
    UploadOrDelete,
)
from contracts.topics import CHUNKS_READY, DOCUMENT_STATUS, DOCUMENT_UPLOADED, dlq
from ragbus.bus import Bus, encode
from ragbus.stage import Outcome, deliveries, handle, subscribe
from tests.events import deleted, uploaded

pytestmark = pytest.mark.unit

TOPIC = DOCUMENT_UPLOADED


def collect(broker: KafkaBroker, topic: str, model: type[BaseModel]) -> list[Any]:
    seen: list[Any] = []

    @broker.subscriber(topic)
    async def sink(body: dict) -> None:
        seen.append(model.model_validate(body))

    return seen


def invalid(stage: str, topic: str) -> float:
    labels = {"stage": stage, "topic": topic, "outcome": "invalid"}
    return REGISTRY.get_sample_value("ragbus_messages_total", labels) or 0.0


def register(broker: KafkaBroker, bus: Bus | None, stage: str = "chunker") -> list[Any]:
    """A subscriber through `subscribe`; the events its handler is given."""
    received: list[Any] = []

    @subscribe(
        broker,
        TOPIC,
        UploadOrDelete,
        stage=stage,
        bus=bus,
        group="test-group",
        max_records=10,
        description="records what it is given",
    )
    async def on_events(events: list[UploadOrDelete], message: KafkaMessage) -> None:
        # The message keeps each valid event beside its record (what `handle` delivers by).
        assert [delivery.event for delivery in deliveries(message)] == events
        received.extend(events)

    return received


GOOD = [uploaded("a"), deleted("b"), uploaded("c")]


async def test_the_handler_gets_typed_events_in_order():
    broker = KafkaBroker("127.0.0.1:9")
    bus = Bus(broker, "chunker", consumes=[TOPIC])
    received = register(broker, bus)
    letters = collect(broker, dlq(TOPIC), DeadLetter)

    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch(*(encode(event) for event in GOOD), topic=TOPIC)

    assert received == GOOD
    assert [type(e) for e in received] == [DocumentUploaded, DocumentDeleted, DocumentUploaded]
    assert letters == []


async def test_a_bad_record_is_dead_lettered_and_the_good_ones_reach_the_handler():
    broker = KafkaBroker("127.0.0.1:9")
    bus = Bus(broker, "chunker", consumes=[TOPIC])
    received = register(broker, bus)
    letters = collect(broker, dlq(TOPIC), DeadLetter)
    status = collect(broker, DOCUMENT_STATUS, StatusUpdate)
    # Valid JSON naming its document, but of a schema major this consumer does not read.
    bad = encode(uploaded("x")).replace(b'"1.0"', b'"9.0"')

    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch(
            encode(GOOD[0]), b"not json", encode(GOOD[1]), bad, encode(GOOD[2]), topic=TOPIC
        )

    assert received == GOOD
    assert [letter.payload for letter in letters] == ["not json", bad.decode()]
    assert all(letter.stage == "chunker" and letter.topic == TOPIC for letter in letters)
    assert "invalid event" in letters[0].error
    assert "schema_version '9.0' is not supported" in letters[1].error
    # The letter naming a document fails it; the one naming none fails nothing.
    assert [(s.document_id, s.state, s.version) for s in status] == [
        ("x", DocumentState.FAILED, "v1")
    ]


async def test_without_a_bus_a_bad_record_is_counted_and_skipped():
    broker = KafkaBroker("127.0.0.1:9")
    received = register(broker, None, stage="unit-test-stage")
    letters = collect(broker, dlq(TOPIC), DeadLetter)
    before = invalid("unit-test-stage", TOPIC)

    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch(
            encode(GOOD[0]), b"not json", b'{"kind": "deleted"}', encode(GOOD[1]), topic=TOPIC
        )

    assert received == GOOD[:2]
    assert invalid("unit-test-stage", TOPIC) - before == 2
    assert letters == []


async def test_handle_delivers_the_outcome_in_order_and_dead_letters_rejections():
    """A rule's outcome reaches the bus: its events in their order, each rejection as a letter
    carrying the rejected record, with its document FAILED at the rejection's version."""
    broker = KafkaBroker("127.0.0.1:9")
    bus = Bus(broker, "chunker", {CHUNKS_READY: DocumentDeleted}, consumes=[TOPIC])
    letters = collect(broker, dlq(TOPIC), DeadLetter)
    status = collect(broker, DOCUMENT_STATUS, StatusUpdate)
    passed = collect(broker, CHUNKS_READY, DocumentDeleted)

    async def rule(events: list[UploadOrDelete]) -> Outcome:
        outcome = Outcome("chunker")
        for event in events:
            if isinstance(event, DocumentDeleted):
                outcome.publish(CHUNKS_READY, event)
            elif event.document_id == "refused":
                outcome.reject(event, "no text layer", "UnreadableDocument", "v7")
            else:
                outcome.report(event, DocumentState.CHUNKING)
        return outcome

    @subscribe(
        broker,
        TOPIC,
        UploadOrDelete,
        stage="chunker",
        bus=bus,
        group="test-group",
        max_records=10,
        description="applies `rule`",
    )
    async def on_events(events: list[UploadOrDelete], message: KafkaMessage) -> None:
        await handle(bus, message, rule)

    refused = uploaded("refused")
    events = [uploaded("a"), deleted("b"), refused, deleted("c")]
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch(*(encode(event) for event in events), topic=TOPIC)

    assert passed == [events[1], events[3]]
    assert [(s.document_id, s.state, s.version) for s in status] == [
        ("a", DocumentState.CHUNKING, "v1"),
        ("refused", DocumentState.FAILED, "v7"),
    ]
    assert status[1].reason == "chunker: no text layer"
    (letter,) = letters
    assert (letter.error, letter.error_type) == ("no text layer", "UnreadableDocument")
    assert DocumentUploaded.model_validate_json(letter.payload) == refused
