"""The chunker's subscriber: `document.uploaded` in, `chunks.ready` out."""

from functools import partial

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from contracts.events import UploadOrDelete
from contracts.topics import DOCUMENT_UPLOADED
from ragbus.bus import Bus
from ragbus.stage import handle, subscribe

from .handlers import ReadBlob, Split, chunk_all

GROUP = "ragbus-chunker"


def register(broker: KafkaBroker, bus: Bus, read: ReadBlob, split: Split) -> None:
    """Subscribe the chunker to `document.uploaded`."""
    rule = partial(chunk_all, read=read, split=split)

    @subscribe(
        broker,
        DOCUMENT_UPLOADED,
        UploadOrDelete,
        stage="chunker",
        bus=bus,
        group=GROUP,
        # One document at a time: its offset is committed as soon as its chunks are out.
        max_records=1,
        max_poll_interval_ms=15 * 60 * 1000,
        title="chunker",
        description="Parse and split uploaded documents into chunks; pass deletions on.",
    )
    async def on_document_uploaded(events: list[UploadOrDelete], message: KafkaMessage) -> None:
        await handle(bus, message, rule)
