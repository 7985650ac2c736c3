"""The query service's subscribers: `index.promoted` drops cached answers, and
`query.conversations` is replayed into the conversation log.

Both belong to no consumer group, because every replica keeps its own cache and its own copy
of the conversations, and so both commit nothing. Neither has a DLQ: a bad record is logged,
counted (`ragbus_messages_total{stage="query",outcome="invalid"}`) and skipped, since a dead
letter would be written once per replica and no document status depends on these topics.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import BaseModel

from contracts.events import (
    Conversation,
    IndexPromoted,
    IndexSwapped,
    PromotedOrDelete,
)
from contracts.topics import INDEX_PROMOTED, QUERY_CONVERSATIONS
from ragbus import metrics
from ragbus.bus import Record
from ragbus.stage import deliveries, subscribe

from .cache import AnswerCache
from .conversations import ConversationLog

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
STAGE = "query"


Consumer = Callable[[], AIOKafkaConsumer | None]


class Replay:
    """Tells when the subscribers are in place after a start: every record that was on
    `query.conversations` when `wait` was first called is applied, and `index.promoted` is read
    from a fixed offset on, so no promotion published after that is missed.

    A service that waits for this before it serves answers no follow-up without its history.
    """

    def __init__(self, conversations: Consumer, promotions: Consumer) -> None:
        self._conversations = conversations
        self._promotions = promotions
        self._ends: dict[TopicPartition, int] | None = None
        self._applied: dict[TopicPartition, int] = {}
        self._caught_up = asyncio.Event()

    @property
    def done(self) -> bool:
        return self._caught_up.is_set()

    def applied(self, record: Record) -> None:
        """Note that the conversations subscriber is done with `record`."""
        self._applied[TopicPartition(record.topic, record.partition)] = record.offset + 1
        self._check()

    async def wait(self, timeout: float) -> bool:
        """Wait until in place (call once the broker started); False after `timeout` seconds,
        when the service goes on with the history it has (logged)."""
        try:
            async with asyncio.timeout(timeout):
                if self._ends is None:
                    promotions, partitions = await _assigned(self._promotions)
                    for tp in partitions:  # resolves "latest" to an offset now
                        await promotions.position(tp)
                    self._ends = await _non_empty_ends(self._conversations)
                    self._check()
                await self._caught_up.wait()
        except TimeoutError:
            log.warning(
                "%s not replayed within %.0f s; serving with the history read so far",
                QUERY_CONVERSATIONS,
                timeout,
            )
            return False
        return True

    def _check(self) -> None:
        if self._ends is not None and all(
            self._applied.get(tp, 0) >= end for tp, end in self._ends.items()
        ):
            self._caught_up.set()


async def _assigned(consumer: Consumer) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
    """A subscriber's consumer and its partitions, once it has them."""
    while (started := consumer()) is None or not started.assignment():
        await asyncio.sleep(0.05)  # the broker is starting or the metadata is on its way
    return started, sorted(started.assignment())


async def _non_empty_ends(consumer: Consumer) -> dict[TopicPartition, int]:
    """The end offset of every partition of the consumer's that holds records.

    An empty partition's end offset may lie past a record that compaction or retention
    removed; its beginning offset equals its end, so it is left out.
    """
    started, partitions = await _assigned(consumer)
    beginnings = await started.beginning_offsets(partitions)
    ends = await started.end_offsets(partitions)
    return {tp: end for tp, end in ends.items() if end > beginnings[tp]}


def register(
    broker: KafkaBroker,
    cache: AnswerCache[Any],
    conversations: ConversationLog,
    on_promoted: Callable[[IndexPromoted | IndexSwapped], None] = lambda event: None,
) -> Replay:
    """Subscribe the query service to `index.promoted` and `query.conversations`; the returned
    `Replay` says when both are in place after a start. `on_promoted` sees every promotion and
    swap (the service follows the serving generation with it)."""
    promotions = subscribe(
        broker,
        INDEX_PROMOTED,
        PromotedOrDelete,
        stage=STAGE,
        bus=None,
        group=None,
        max_records=100,
        # A starting replica's cache is empty: earlier promotions change nothing in it.
        offset_reset="latest",
        title="query:cache",
        description="Drop the cached answers: the index changed.",
    )

    @promotions
    async def on_index_promoted(events: list[PromotedOrDelete]) -> None:
        # Any record here means the index changed, so even one that cannot be read clears.
        dropped = cache.clear()
        for event in events:
            if isinstance(event, IndexPromoted | IndexSwapped):
                on_promoted(event)
            metrics.MESSAGES.labels(STAGE, INDEX_PROMOTED, "ok").inc()
            log.info(
                "index changed (%s): dropped %d cached answers",
                type(event).__name__,
                dropped,
                extra={
                    field: getattr(event, field, None)
                    for field in ("document_id", "tenant_id", "trace_id", "generation")
                },
            )

    replayed = subscribe(
        broker,
        QUERY_CONVERSATIONS,
        Conversation | None,
        stage=STAGE,
        bus=None,
        group=None,
        max_records=500,
        title="query:history",
        description="Replay every conversation into this replica's memory, then follow it "
        "(a null value is a tombstone: the conversation is forgotten).",
    )
    replay = Replay(lambda: replayed.consumer, lambda: promotions.consumer)

    @replayed
    async def on_conversations(events: list[Conversation | None], message: KafkaMessage) -> None:
        for delivery in deliveries(message):
            record, conversation = delivery.record, delivery.event
            if conversation is None:
                if record.key is not None:
                    conversations.forget(record.key.decode(errors="replace"))
                    metrics.MESSAGES.labels(STAGE, QUERY_CONVERSATIONS, "tombstone").inc()
            elif record.key == conversation.key.encode():
                conversations.apply(conversation)
                metrics.MESSAGES.labels(STAGE, QUERY_CONVERSATIONS, "ok").inc()
            else:
                _invalid(record, f"key {record.key!r} is not {conversation.key!r}")
        for record in message.raw_message:
            replay.applied(record)  # even a record that failed is behind us

    return replay


def _invalid(record: Record, reason: str) -> None:
    metrics.MESSAGES.labels(STAGE, record.topic, "invalid").inc()
    log.warning(
        "skipped a bad record on %s: %s",
        record.topic,
        reason,
        extra={"topic": record.topic, "partition": record.partition, "offset": record.offset},
    )
