"""A stage subscriber on a real broker: a failed batch that spans partitions is redelivered
whole (faststream < 0.7.8 rewound only the first partition of the batch and lost the rest)."""

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from contracts.events import DocumentDeleted
from ragbus.settings import KafkaSettings
from ragbus.stage import subscribe
from tests.bus import kafka_options

pytestmark = pytest.mark.integration

PARTITIONS = 4
RECORDS = 40


async def fill(bootstrap: str, topic: str) -> set[str]:
    """A new topic with RECORDS tombstones spread over its partitions; their document ids."""
    admin = AIOKafkaAdminClient(**kafka_options(bootstrap))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(**kafka_options(bootstrap), acks="all")
    await producer.start()
    ids = {f"doc-{n}" for n in range(RECORDS)}
    try:
        for n, document_id in enumerate(sorted(ids)):
            event = DocumentDeleted(document_id=document_id, tenant_id="t")
            await producer.send_and_wait(
                topic, event.model_dump_json().encode(), partition=n % PARTITIONS
            )
    finally:
        await producer.stop()
    return ids


async def test_a_failed_batch_spanning_partitions_is_redelivered_whole(idle_broker):
    topic = f"test.batches.{uuid.uuid4().hex[:8]}"
    expected = await fill(idle_broker, topic)
    broker = KafkaBroker(idle_broker, security=KafkaSettings().kafka_security())
    seen: set[str] = set()
    failed_batches: list[set[int]] = []

    @subscribe(
        broker,
        topic,
        DocumentDeleted,
        stage="test",
        bus=None,
        group=f"test-{uuid.uuid4().hex[:8]}",
        max_records=RECORDS,
        description="fails its first batch that spans partitions",
    )
    async def on_events(events: list[DocumentDeleted], message: KafkaMessage) -> None:
        partitions = {record.partition for record in message.raw_message}
        if not failed_batches and len(partitions) > 1:
            failed_batches.append(partitions)
            raise RuntimeError("the first batch across partitions fails once")
        seen.update(event.document_id for event in events)

    await broker.start()
    try:
        async with asyncio.timeout(60):
            while seen != expected:
                await asyncio.sleep(0.2)
    finally:
        await broker.stop()
    assert failed_batches and len(failed_batches[0]) > 1
    assert seen == expected
