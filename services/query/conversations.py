"""Conversation history: held in memory by every replica, kept durably on the compacted
`query.conversations` topic, and rebuilt from it at start (see `subscriber.register`).

Each record is the whole conversation (its last `max_turns` turns), so replaying the topic
applies records in order and the newest one per key wins.
"""

import asyncio
import logging
from collections import OrderedDict

from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker

from contracts.events import Conversation, Turn, conversation_key
from contracts.topics import QUERY_CONVERSATIONS
from ragbus import metrics
from ragbus.bus import encode

log = logging.getLogger(__name__)


class ConversationLog:
    """The conversations of every tenant, looked up by (tenant, conversation id)."""

    def __init__(
        self,
        broker: KafkaBroker,
        *,
        max_turns: int = 6,
        max_conversations: int = 10_000,
        publish_timeout_s: float = 5.0,
    ) -> None:
        """`max_conversations` bounds memory: beyond it the least recently updated is dropped
        (from memory only; the topic still has it until its retention ends)."""
        if max_turns < 1 or max_conversations < 1:
            raise ValueError("max_turns and max_conversations must be >= 1")
        self.max_turns = max_turns
        self.max_conversations = max_conversations
        self.publish_timeout_s = publish_timeout_s
        self._held: OrderedDict[str, Conversation] = OrderedDict()
        self._publisher = broker.publisher(
            QUERY_CONVERSATIONS,
            title=f"query:{QUERY_CONVERSATIONS}",
            schema=Conversation,
            description=Conversation.__doc__,
        )

    def __len__(self) -> int:
        return len(self._held)

    def history(self, tenant_id: str, conversation_id: str) -> list[Turn]:
        """The conversation's turns, oldest first; none for an unknown conversation.

        The lookup key includes the tenant, so another tenant's conversation is unknown here.
        """
        held = self._held.get(conversation_key(tenant_id, conversation_id))
        return list(held.turns) if held is not None else []

    async def append(
        self, tenant_id: str, conversation_id: str, question: str, answer: str
    ) -> None:
        """Record a turn: in memory first, so this replica's next request sees it, then on the
        topic, so a restarted or another replica does.

        A failed or slow write is logged and counted, never raised: the answer has been given,
        and this replica still holds the turn.
        """
        turns = [*self.history(tenant_id, conversation_id), Turn(question=question, answer=answer)]
        conversation = Conversation(
            conversation_id=conversation_id,
            tenant_id=tenant_id,
            turns=turns[-self.max_turns :],
        )
        self.apply(conversation)
        try:
            async with asyncio.timeout(self.publish_timeout_s):
                await self._publisher.publish(
                    encode(conversation),
                    key=conversation.key.encode(),
                    headers={"type": Conversation.__name__},
                )
        except (KafkaError, TimeoutError) as exc:
            metrics.CONVERSATION_WRITES.labels("failed").inc()
            log.warning(
                "could not keep a conversation turn on %s: %r",
                QUERY_CONVERSATIONS,
                exc,
                extra={"tenant_id": tenant_id, "conversation_id": conversation_id},
            )
        else:
            metrics.CONVERSATION_WRITES.labels("ok").inc()

    def apply(self, conversation: Conversation) -> bool:
        """Hold `conversation` unless a newer one of the same key is held already (this
        replica's own record, read back after a later turn); True when it was taken."""
        key = conversation.key
        held = self._held.get(key)
        if held is not None and held.updated_at > conversation.updated_at:
            return False
        self._held[key] = conversation
        self._held.move_to_end(key)
        while len(self._held) > self.max_conversations:
            self._held.popitem(last=False)
        return True

    def forget(self, key: str) -> None:
        """Drop the conversation with message key `key` (a tombstone on the topic)."""
        self._held.pop(key, None)
