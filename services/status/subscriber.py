"""The status service's subscriber: replays `document.status` from the start at every start.

It belongs to no consumer group and commits nothing: the compacted topic is the state, and
folding it again from the beginning rebuilds the board after a restart.
"""

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from contracts.events import StatusUpdate
from contracts.topics import DOCUMENT_STATUS
from ragbus import metrics
from ragbus.bus import Bus

from .board import StatusBoard


def register(broker: KafkaBroker, bus: Bus, board: StatusBoard) -> None:
    @broker.subscriber(
        DOCUMENT_STATUS,
        group_id=None,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.MANUAL,
        title="status",
        description="Fold every stage's status updates into per-document state.",
    )
    async def on_status_update(message: KafkaMessage) -> None:
        update = await bus.decode(message.raw_message, StatusUpdate)
        if update is not None:
            metrics.MESSAGES.labels("status", DOCUMENT_STATUS, "ok").inc()
            board.apply(update)
