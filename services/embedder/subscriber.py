"""The embedder's subscriber: `chunks.ready` in, `vectors.ready` out."""

from functools import partial

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from contracts.events import ChunksOrDelete
from contracts.topics import CHUNKS_READY, CONSUMER_GROUPS
from ragbus.adapters.embedding import Embedders
from ragbus.bus import Bus
from ragbus.stage import handle, subscribe

from .handlers import embed_all
from .settings import EmbedderSettings

GROUP = CONSUMER_GROUPS["embedder"]


def register(
    broker: KafkaBroker, bus: Bus, settings: EmbedderSettings, backends: Embedders
) -> None:
    """Subscribe the embedder to `chunks.ready`, pulling several events per model batch."""
    rule = partial(embed_all, backends=backends)

    @subscribe(
        broker,
        CHUNKS_READY,
        ChunksOrDelete,
        stage="embedder",
        bus=bus,
        group=GROUP,
        max_records=settings.max_events_per_batch,
        max_poll_interval_ms=15 * 60 * 1000,
        title="embedder",
        description="Embed chunks in batches; pass deletions on in order.",
    )
    async def on_chunks_ready(events: list[ChunksOrDelete], message: KafkaMessage) -> None:
        await handle(bus, message, rule)
