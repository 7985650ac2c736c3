"""Consumer lag read from a real broker: what KEDA's Kafka scaler would see for a group."""

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import REGISTRY

from contracts.topics import CHUNKS_READY
from ragbus.lag import LagReader, export_lag
from tests.bus import kafka_options

pytestmark = pytest.mark.integration


async def produce(bootstrap: str, topic: str, per_partition: dict[int, int]) -> None:
    producer = AIOKafkaProducer(**kafka_options(bootstrap), acks="all")
    await producer.start()
    try:
        for partition, count in per_partition.items():
            for _ in range(count):
                await producer.send_and_wait(topic, b"{}", partition=partition)
    finally:
        await producer.stop()


async def commit(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit offsets for a group that has no member, as a stage would have. Without
    auto-commit: on stop it would commit the consumer's own positions over these."""
    consumer = AIOKafkaConsumer(
        **kafka_options(bootstrap), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
    finally:
        await consumer.stop()


async def test_lag_counts_uncommitted_records_and_a_partition_never_committed_from_its_start(
    idle_broker,
):
    group = f"lag-{uuid.uuid4().hex[:8]}"
    async with LagReader(kafka_options(idle_broker)) as reader:
        before = await reader.read(group, CHUNKS_READY)
    await produce(idle_broker, CHUNKS_READY, {0: 5, 1: 3})
    await commit(
        idle_broker,
        group,
        {
            TopicPartition(CHUNKS_READY, 0): before.partitions[0] + 2,  # 3 of 5 left
            TopicPartition(CHUNKS_READY, 2): before.partitions[2],  # nothing left
        },
    )

    async with LagReader(kafka_options(idle_broker)) as reader:
        lag = await reader.read(group, CHUNKS_READY)

    assert lag.partitions.keys() == before.partitions.keys() and len(lag.partitions) >= 3
    assert lag.partitions[0] == 3
    assert lag.partitions[1] == before.partitions[1] + 3  # never committed: all of it
    assert lag.partitions[2] == 0
    assert lag.total == sum(lag.partitions.values())
    assert lag.with_lag == sum(1 for n in lag.partitions.values() if n)


async def test_a_topic_that_does_not_exist_has_no_partitions(idle_broker):
    async with LagReader(kafka_options(idle_broker)) as reader:
        lag = await reader.read("any-group", f"no-such-topic-{uuid.uuid4().hex[:8]}")
    assert (lag.partitions, lag.total) == ({}, 0)


async def test_the_exporter_publishes_the_lag_as_a_gauge(idle_broker):
    group = f"lag-{uuid.uuid4().hex[:8]}"
    await produce(idle_broker, CHUNKS_READY, {3: 2})
    async with LagReader(kafka_options(idle_broker)) as reader:
        expected = await reader.read(group, CHUNKS_READY)
    task = asyncio.create_task(
        export_lag(kafka_options(idle_broker), group, CHUNKS_READY, interval_s=0.2)
    )
    labels = {"group": group, "topic": CHUNKS_READY}
    try:
        for _ in range(100):
            if REGISTRY.get_sample_value("ragbus_consumer_lag", labels) is not None:
                break
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
    assert REGISTRY.get_sample_value("ragbus_consumer_lag", labels) == expected.total > 0
    assert REGISTRY.get_sample_value("ragbus_consumer_lag_partitions", labels) == len(
        expected.partitions
    )
