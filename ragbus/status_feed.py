"""Replaying `document.status` into a document table.

`follow` replays the compacted topic from the start at every start, in no consumer group and
committing nothing: the topic is the state, and folding it again rebuilds the table.
"""

from faststream.kafka import KafkaBroker

from contracts.events import Stage, StatusUpdate
from contracts.status import DocumentTable
from contracts.topics import DOCUMENT_STATUS
from ragbus import metrics
from ragbus.bus import Bus
from ragbus.stage import subscribe

# Updates folded per poll while replaying the topic.
REPLAY_BATCH = 500


def follow(broker: KafkaBroker, table: DocumentTable, stage: Stage, bus: Bus | None = None) -> None:
    """Fold every record of `document.status` into `table`. A bad record is dead-lettered
    through `bus` (by the status service, which owns the topic's DLQ), else skipped."""

    @subscribe(
        broker,
        DOCUMENT_STATUS,
        StatusUpdate,
        stage=stage,
        bus=bus,
        group=None,
        max_records=REPLAY_BATCH,
        title=f"{stage}:status",
        description="Fold every stage's status updates into per-document state.",
    )
    async def on_status_updates(updates: list[StatusUpdate]) -> None:
        for update in updates:
            table.apply(update)
        metrics.MESSAGES.labels(stage, DOCUMENT_STATUS, "ok").inc(len(updates))
