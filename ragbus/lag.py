"""Consumer lag: the records of a topic a consumer group has not committed yet, per partition.

It is what KEDA's Kafka scaler scales a stage on, so it is measured the same way: the log end
offset minus the group's committed offset; a partition the group has never committed on counts
from its first retained record (the stages' `auto_offset_reset` is "earliest"). Each stage
exports its own group's lag on `/metrics` (`ragbus_consumer_lag{group,topic}`), and the local
autoscaler of `make scale-demo` reads it the same way.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    GroupCoordinatorNotAvailableError,
    GroupLoadInProgressError,
    KafkaError,
    NotCoordinatorForGroupError,
)
from prometheus_client import Gauge

from ragbus.retry import retry

log = logging.getLogger(__name__)

# While a fresh broker creates its offsets topic, and while a group moves between brokers.
COORDINATOR_TRANSIENT = (
    GroupCoordinatorNotAvailableError,
    GroupLoadInProgressError,
    NotCoordinatorForGroupError,
)

CONSUMER_LAG = Gauge(
    "ragbus_consumer_lag",
    "Records of a topic its consumer group has not committed yet",
    ["group", "topic"],
)
CONSUMER_LAG_PARTITIONS = Gauge(
    "ragbus_consumer_lag_partitions",
    "Partitions of a topic, the most replicas of its consumer group that can have work",
    ["group", "topic"],
)


@dataclass(frozen=True)
class GroupLag:
    """One group's lag on one topic, per partition."""

    group: str
    topic: str
    partitions: dict[int, int]  # partition -> uncommitted records

    @property
    def total(self) -> int:
        return sum(self.partitions.values())

    @property
    def with_lag(self) -> int:
        return sum(1 for lag in self.partitions.values() if lag > 0)


class LagReader:
    """A connection to the broker that reads groups' committed offsets and the topics' ends."""

    def __init__(self, kafka: Mapping[str, Any], client_id: str = "ragbus-lag") -> None:
        """`kafka`: an aiokafka client's connection options (`KafkaSettings.kafka_options`)."""
        self._admin = AIOKafkaAdminClient(**kafka, client_id=client_id)
        self._consumer = AIOKafkaConsumer(**kafka, client_id=client_id)

    async def __aenter__(self) -> Self:
        await self._admin.start()
        try:
            await self._consumer.start()
        except BaseException:
            await self._admin.close()
            raise
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._consumer.stop()
        await self._admin.close()

    async def read(self, group: str, topic: str) -> GroupLag:
        """The group's lag on every partition of `topic` (none when the topic does not exist)."""
        described = await self._admin.describe_topics([topic])
        tps = [
            TopicPartition(topic, p["partition"])
            for t in described
            if not t["error_code"]
            for p in t["partitions"]
        ]
        if not tps:
            return GroupLag(group, topic, {})
        ends = await self._consumer.end_offsets(tps)
        beginnings = await self._consumer.beginning_offsets(tps)
        committed = await retry(
            lambda: self._admin.list_consumer_group_offsets(group, partitions=tps),
            transient=COORDINATOR_TRANSIENT,
            attempts=8,
            what=f"reading the commits of {group}",
        )
        lags = {}
        for tp in sorted(tps):
            offset = committed[tp].offset if tp in committed else -1
            start = offset if offset >= 0 else beginnings[tp]
            lags[tp.partition] = max(ends[tp] - start, 0)
        return GroupLag(group, topic, lags)


async def export_lag(kafka: Mapping[str, Any], group: str, topic: str, interval_s: float) -> None:
    """Keep the lag gauges of `group` on `topic` fresh, every `interval_s`, until cancelled; a
    broker that cannot be reached is logged and tried again."""
    while True:
        try:
            async with LagReader(kafka, client_id=f"{group}-lag") as reader:
                while True:
                    lag = await reader.read(group, topic)
                    CONSUMER_LAG.labels(group, topic).set(lag.total)
                    CONSUMER_LAG_PARTITIONS.labels(group, topic).set(len(lag.partitions))
                    await asyncio.sleep(interval_s)
        except (KafkaError, OSError) as exc:
            log.warning("cannot read the lag of %s on %s: %s", group, topic, exc)
            await asyncio.sleep(interval_s)


def lag_hooks(
    kafka: Mapping[str, Any], group: str, topic: str, interval_s: float
) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    """A service's `started` and `shutdown` hooks that run `export_lag` in the background."""
    tasks: list[asyncio.Task[None]] = []

    async def start() -> None:
        tasks.append(asyncio.create_task(export_lag(kafka, group, topic, interval_s)))

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    return start, stop
