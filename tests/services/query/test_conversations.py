"""Conversation history through the real broker: what one replica records, a restarted replica
(a new broker connection that replays `query.conversations`) and a running one read back."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

import pytest
from faststream.kafka import KafkaBroker
from prometheus_client import REGISTRY

from contracts.events import IndexPromoted, conversation_key
from contracts.topics import INDEX_PROMOTED, QUERY_CONVERSATIONS
from ragbus.bus import create_broker, encode
from ragbus.settings import KafkaSettings
from services.query.cache import AnswerCache
from services.query.conversations import ConversationLog
from services.query.subscriber import register
from tests.events import index_promoted

pytestmark = pytest.mark.integration

MAX_TURNS = 3


@dataclass
class Replica:
    conversations: ConversationLog
    cache: AnswerCache[str]
    broker: KafkaBroker
    promotions: list[IndexPromoted] = field(default_factory=list)
    """Every promotion the replica read (`register`'s `on_promoted`)."""


@asynccontextmanager
async def replica(bootstrap: str) -> AsyncIterator[Replica]:
    """A query replica's subscribers, started and caught up with the topics."""
    broker = create_broker(KafkaSettings(kafka_bootstrap=bootstrap), "query-test")
    started = Replica(ConversationLog(broker, max_turns=MAX_TURNS), AnswerCache(8, 60), broker)
    replay = register(broker, started.cache, started.conversations, started.promotions.append)
    await broker.start()
    try:
        assert await replay.wait(timeout=60)
        assert replay.done
        yield started
    finally:
        await broker.stop()


def questions(conversations: ConversationLog, tenant: str, cid: str) -> list[str]:
    return [turn.question for turn in conversations.history(tenant, cid)]


async def test_a_restarted_replica_replays_each_tenants_last_turns(kafka_broker):
    cid = uuid.uuid4().hex
    # "a/x" + cid and "a" + "x/"+cid would share the key "a/x/<cid>" without the tenant's
    # encoding, and compaction would keep only one of them.
    async with replica(kafka_broker) as started:
        first = started.conversations
        for n in range(5):
            await first.append("a/x", cid, f"q{n}", f"answer {n}")
        await first.append("a", f"x/{cid}", "other tenant", "its answer")
        recorded = first.history("a/x", cid)
        assert [turn.question for turn in recorded] == ["q2", "q3", "q4"]

    async with replica(kafka_broker) as started:
        restarted = started.conversations
        assert restarted.history("a/x", cid) == recorded
        assert questions(restarted, "a", f"x/{cid}") == ["other tenant"]
        assert restarted.history("a", cid) == []  # another tenant, same conversation id
        assert restarted.history("a/x", "unknown") == []


async def test_a_running_replica_follows_the_turns_another_one_records(kafka_broker):
    cid = uuid.uuid4().hex
    async with replica(kafka_broker) as first, replica(kafka_broker) as second:
        one, other = first.conversations, second.conversations
        await one.append("acme", cid, "what is kafka?", "a log")
        async with asyncio.timeout(30):
            while not other.history("acme", cid):
                await asyncio.sleep(0.05)
        assert other.history("acme", cid) == one.history("acme", cid)
        # A follow-up answered by the other replica builds on the first turn.
        await other.append("acme", cid, "who wrote it?", "LinkedIn")
        assert questions(other, "acme", cid) == ["what is kafka?", "who wrote it?"]


async def test_bad_records_and_tombstones_do_not_stop_the_replay(kafka_broker):
    kept, erased = uuid.uuid4().hex, uuid.uuid4().hex
    labels = {"stage": "query", "topic": QUERY_CONVERSATIONS, "outcome": "invalid"}
    async with replica(kafka_broker) as started:
        first, broker = started.conversations, started.broker
        await first.append("acme", kept, "q", "a")
        await first.append("acme", erased, "q", "a")
        await broker.publish(b"not json", QUERY_CONVERSATIONS, key=b"acme/poison")
        await broker.publish(
            None, QUERY_CONVERSATIONS, key=conversation_key("acme", erased).encode()
        )
        async with asyncio.timeout(30):
            while first.history("acme", erased):
                await asyncio.sleep(0.05)

    invalid = REGISTRY.get_sample_value("ragbus_messages_total", labels) or 0.0
    async with replica(kafka_broker) as started:
        restarted = started.conversations
        assert questions(restarted, "acme", kept) == ["q"]
        assert restarted.history("acme", erased) == []
    assert REGISTRY.get_sample_value("ragbus_messages_total", labels) == invalid + 1


async def test_a_promotion_published_once_a_replica_is_ready_drops_its_cache(kafka_broker):
    """`Replay.wait` fixes where `index.promoted` is read from before it returns, so the first
    promotion published after that reaches the replica (a "latest" resolved too late would skip
    it), is read as a promotion, and empties the cache."""
    document_id = uuid.uuid4().hex  # other promotions on the session's broker are not ours
    async with replica(kafka_broker) as started:
        cache = started.cache
        cache.put("key", "answer")
        assert cache.get("key") == "answer"
        promoted = index_promoted(document_id)
        await started.broker.publish(encode(promoted), INDEX_PROMOTED, key=document_id.encode())

        def read() -> list[IndexPromoted]:
            return [seen for seen in started.promotions if seen.document_id == document_id]

        with suppress(TimeoutError):
            async with asyncio.timeout(30):
                while not read():
                    await asyncio.sleep(0.05)
        assert read() == [promoted], "the ready replica did not read the promotion within 30 s"
        assert len(cache) == 0
        assert cache.get("key") is None
