"""A stage consumer joins its group in one generation: one JoinGroup, naming every protocol.

aiokafka 0.14 sends one JoinGroup per listed assignor, each naming the protocols listed so far
(aio-libs/aiokafka#1168). The later request changes the member's protocols, so the broker starts
another rebalance of the group the member has just joined: a lone member lands in generation 2,
and members starting together kept restarting each other's rebalance (three embedders with
sticky + round robin reached generation 1,100 and more within two minutes, consuming nothing).
`ragbus.bus.ASSIGNMENT` therefore lists a single assignor; this holds it to that.
"""

import asyncio
import logging
import re
import uuid

import pytest
from aiokafka import AIOKafkaConsumer

from contracts.topics import CHUNKS_READY
from ragbus.bus import ASSIGNMENT
from tests.bus import kafka_options

pytestmark = pytest.mark.faults

JOINED = re.compile(r"Joined group '[^']+' \(generation (\d+)\)")


async def test_a_stage_consumer_joins_its_group_in_one_generation(kafka_broker, caplog):
    caplog.set_level(logging.INFO, logger="aiokafka.consumer.group_coordinator")
    consumer = AIOKafkaConsumer(
        CHUNKS_READY,
        **kafka_options(kafka_broker),
        group_id=f"join-{uuid.uuid4().hex}",
        partition_assignment_strategy=ASSIGNMENT,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(60):
            while not consumer.assignment():
                await asyncio.sleep(0.05)
    finally:
        await consumer.stop()
    assert [int(g) for g in JOINED.findall(caplog.text)] == [1]
