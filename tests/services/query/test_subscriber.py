"""The query service's subscribers with FastStream's in-memory test broker (the replay through
a real broker is in test_conversations.py)."""

from datetime import UTC, datetime, timedelta

import pytest
from faststream.kafka import TestKafkaBroker
from prometheus_client import REGISTRY

from contracts.events import Conversation, Turn
from contracts.topics import INDEX_PROMOTED, QUERY_CONVERSATIONS
from ragbus.bus import create_broker, encode
from ragbus.settings import KafkaSettings
from services.query.cache import AnswerCache
from services.query.conversations import ConversationLog
from services.query.subscriber import register
from tests.events import index_promoted

pytestmark = pytest.mark.unit


@pytest.fixture
def broker():
    return create_broker(KafkaSettings(), "query-test")


@pytest.fixture
def cache():
    return AnswerCache[str](8, 60)


@pytest.fixture
def conversations(broker):
    return ConversationLog(broker, max_turns=3)


@pytest.fixture(autouse=True)
def registered(broker, cache, conversations):
    return register(broker, cache, conversations)


def invalid(topic: str) -> float:
    labels = {"stage": "query", "topic": topic, "outcome": "invalid"}
    return REGISTRY.get_sample_value("ragbus_messages_total", labels) or 0.0


def promoted() -> bytes:
    return encode(index_promoted("d1", points=3))


@pytest.mark.parametrize(("payload", "bad"), [(promoted(), 0), (b"not json", 1)])
async def test_index_promoted_drops_the_cached_answers(broker, cache, payload, bad):
    key = cache.key("acme", "what is kafka?", {}, 1)
    cache.put(key, "answer")
    before = invalid(INDEX_PROMOTED)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(payload, INDEX_PROMOTED, key=b"d1")
    assert len(cache) == 0
    assert cache.get(cache.key("acme", "what is kafka?", {}, 1)) is None
    assert invalid(INDEX_PROMOTED) - before == bad


def conversation(tenant: str = "acme", cid: str = "c1", **fields) -> Conversation:
    return Conversation(
        tenant_id=tenant, conversation_id=cid, turns=[Turn(question="q", answer="a")], **fields
    )


async def test_a_conversation_record_is_held_and_a_tombstone_forgets_it(broker, conversations):
    record = conversation()
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(encode(record), QUERY_CONVERSATIONS, key=record.key.encode())
        assert conversations.history("acme", "c1") == record.turns
        await test_broker.publish(None, QUERY_CONVERSATIONS, key=record.key.encode())
        assert conversations.history("acme", "c1") == []


@pytest.mark.parametrize(
    ("payload", "key"),
    [
        (b"not json", b"acme/c1"),
        (b"", b"acme/c1"),
        (encode(conversation()).replace(b'"1.0"', b'"2.0"'), b"acme/c1"),
        (encode(conversation(tenant="other")), b"acme/c1"),  # the key names another tenant
    ],
)
async def test_bad_conversation_records_are_counted_and_skipped(
    broker, conversations, payload, key
):
    good = conversation(cid="c2")
    before = invalid(QUERY_CONVERSATIONS)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(payload, QUERY_CONVERSATIONS, key=key)
        await test_broker.publish(encode(good), QUERY_CONVERSATIONS, key=good.key.encode())
    assert invalid(QUERY_CONVERSATIONS) - before == 1
    assert len(conversations) == 1 and conversations.history("acme", "c2") == good.turns


async def test_an_appended_turn_is_published_and_its_echo_changes_nothing(broker, conversations):
    seen = []

    @broker.subscriber(QUERY_CONVERSATIONS)
    async def sink(body: dict) -> None:
        seen.append(Conversation.model_validate(body))

    async with TestKafkaBroker(broker):
        for n in range(4):
            await conversations.append("acme", "c1", f"q{n}", f"a{n}")
    assert [[turn.question for turn in record.turns] for record in seen] == [
        ["q0"],
        ["q0", "q1"],
        ["q0", "q1", "q2"],
        ["q1", "q2", "q3"],
    ]
    assert [turn.question for turn in conversations.history("acme", "c1")] == ["q1", "q2", "q3"]


def test_an_older_record_of_a_held_conversation_is_ignored(conversations):
    now = datetime.now(UTC)
    newer = conversation(updated_at=now)
    older = Conversation(
        tenant_id="acme", conversation_id="c1", turns=[], updated_at=now - timedelta(seconds=1)
    )
    assert conversations.apply(newer)
    assert not conversations.apply(older)
    assert conversations.history("acme", "c1") == newer.turns
