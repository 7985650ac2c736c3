"""The chunker's subscriber: `document.uploaded` in, `chunks.ready` out."""

from functools import partial

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from tokenizers import Tokenizer

from contracts.events import ChunksReady, DocumentUploaded, UploadOrDelete
from contracts.topics import DOCUMENT_UPLOADED
from ragbus.adapters.blobs import read_blob
from ragbus.bus import Bus
from ragbus.stage import handle, subscribe

from .handlers import chunk_all
from .sandbox import Sandbox
from .settings import ChunkerSettings
from .transform import chunk_document

GROUP = "ragbus-chunker"


def register(
    broker: KafkaBroker, bus: Bus, settings: ChunkerSettings, tokenizer: Tokenizer
) -> Sandbox:
    """Subscribe the chunker to `document.uploaded`; return the parsers' sandbox, for the
    service to close at shutdown."""
    # Parsing runs in worker processes: a hostile file costs a worker, not the chunker.
    sandbox = Sandbox(settings.sandbox_limits(), settings.extract_workers, resident=[tokenizer])

    def read(uri: str) -> bytes:
        return read_blob(uri, settings.max_blob_bytes, settings.readable_blob_roots)

    def split(event: DocumentUploaded, data: bytes) -> list[ChunksReady]:
        return sandbox.run(chunk_document, event, data, tokenizer, **settings.split())

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

    return sandbox
