"""Replaying `document.status` into a document table.

`follow` replays the compacted topic from the start at every start, in no consumer group and
committing nothing: the topic is the state, and folding it again rebuilds the table.
"""

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import ValidationError

from contracts.events import Stage, StatusUpdate
from contracts.status import DocumentTable
from contracts.topics import DOCUMENT_STATUS
from ragbus import metrics
from ragbus.bus import Bus, Record


def follow(broker: KafkaBroker, table: DocumentTable, stage: Stage, bus: Bus | None = None) -> None:
    """Fold every record of `document.status` into `table`. A bad record is dead-lettered
    through `bus` (by the status service, which owns the topic's DLQ), else skipped."""

    @broker.subscriber(
        DOCUMENT_STATUS,
        group_id=None,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.MANUAL,  # no group, nothing to commit
        title=f"{stage}:status",
        description="Fold every stage's status updates into per-document state.",
    )
    async def on_status_update(message: KafkaMessage) -> None:
        record: Record = message.raw_message
        if bus is not None:
            update = await bus.decode(record, StatusUpdate)
        else:
            try:
                update = StatusUpdate.model_validate_json(record.value or b"")
            except ValidationError:
                update = None
        if update is None:
            metrics.MESSAGES.labels(stage, DOCUMENT_STATUS, "invalid").inc()
            return
        metrics.MESSAGES.labels(stage, DOCUMENT_STATUS, "ok").inc()
        table.apply(update)
