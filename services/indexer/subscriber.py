"""The indexer's subscriber: `vectors.ready` in, `index.promoted` out."""

from functools import partial

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from contracts.events import VectorsOrDelete
from contracts.topics import CONSUMER_GROUPS, VECTORS_READY
from ragbus.adapters.store import StoreRunner
from ragbus.bus import Bus
from ragbus.stage import handle, subscribe

from .handlers import index
from .settings import IndexerSettings

GROUP = CONSUMER_GROUPS["indexer"]


def register(broker: KafkaBroker, bus: Bus, settings: IndexerSettings, runner: StoreRunner) -> None:
    """Subscribe the indexer to `vectors.ready`."""
    rule = partial(index, runner=runner, dimensions=settings.vector_dimensions)

    @subscribe(
        broker,
        VECTORS_READY,
        VectorsOrDelete,
        stage="indexer",
        bus=bus,
        group=GROUP,
        max_records=settings.max_events_per_batch,
        title="indexer",
        description="Upsert vectors, promote complete documents, remove deleted ones.",
    )
    async def on_vectors_ready(events: list[VectorsOrDelete], message: KafkaMessage) -> None:
        await handle(bus, message, rule)
