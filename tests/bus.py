"""How the tests sign in to their brokers: as `ragbus-admin`, whose password the session sets
(`tests/conftest.py`) and every broker the tests start is given (RAGBUS_KAFKA_ADMIN_PASSWORD)."""

from collections.abc import Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ragbus.settings import KafkaSettings


def kafka_options(bootstrap: str) -> dict[str, Any]:
    """An aiokafka client's options for the broker at `bootstrap`, signed in as the admin."""
    return KafkaSettings(kafka_bootstrap=bootstrap).kafka_options()


async def partitions_of(bootstrap: str, topics: Sequence[str]) -> list[TopicPartition]:
    """Every partition of `topics`, as the broker describes them."""
    admin = AIOKafkaAdminClient(**kafka_options(bootstrap))
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]


async def read_all(bootstrap: str, topics: Sequence[str]) -> list[Any]:
    """Every record of `topics` from the beginning to the end they have now, without a group."""
    partitions = await partitions_of(bootstrap, topics)
    consumer = AIOKafkaConsumer(**kafka_options(bootstrap), auto_offset_reset="earliest")
    await consumer.start()
    try:
        ends = {tp: end for tp, end in (await consumer.end_offsets(partitions)).items() if end}
        if not ends:
            return []
        consumer.assign(list(ends))
        await consumer.seek_to_beginning(*ends)
        values: list[dict[str, Any]] = []
        while ends:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                values += [_json(record.value) for record in records]
            ends = {tp: end for tp, end in ends.items() if await consumer.position(tp) < end}
        return values
    finally:
        await consumer.stop()


def _json(value: bytes | None) -> Any:
    """A record's JSON value; None for one that is no JSON (bad-input tests write such)."""
    try:
        return orjson.loads(value or b"null")
    except orjson.JSONDecodeError:
        return None
