"""The ingest service's subscribers: what the documents' latest uploads use, and whether a
generation is being built (`janitor.BlobReferences`), and the sweep that removes the rest."""

import asyncio
import logging

from faststream.kafka import KafkaBroker

from contracts.events import DocumentDeleted, DocumentUploaded, GenerationPlan, UploadOrDelete
from contracts.topics import DOCUMENT_UPLOADED, INDEX_GENERATIONS
from ragbus.adapters.blobs import BlobStore
from ragbus.stage import subscribe

from .janitor import BlobReferences
from .settings import IngestSettings

log = logging.getLogger(__name__)
# Records folded per poll while `document.uploaded` and `index.generations` are replayed.
REPLAY_BATCH = 500


def follow_references(broker: KafkaBroker, references: BlobReferences) -> None:
    """Fold `document.uploaded` (which blobs the documents use) and `index.generations`
    (whether one is being built) from their starts, in no consumer group."""
    uploads = subscribe(
        broker,
        DOCUMENT_UPLOADED,
        UploadOrDelete,
        stage="ingest",
        bus=None,
        group=None,
        max_records=REPLAY_BATCH,
        title="ingest:blobs",
        description="Which blobs the documents' latest uploads use (the others are removed).",
    )

    @uploads
    async def on_uploads(events: list[DocumentUploaded | DocumentDeleted]) -> None:
        for event in events:
            references.apply(event)

    plans = subscribe(
        broker,
        INDEX_GENERATIONS,
        GenerationPlan,
        stage="ingest",
        bus=None,
        group=None,
        max_records=100,
        title="ingest:generations",
        description="No blob is removed while an index generation is being built.",
    )

    @plans
    async def on_plans(events: list[GenerationPlan]) -> None:
        for plan in events:
            references.follow(plan)


async def sweep(blobs: BlobStore, references: BlobReferences, settings: IngestSettings) -> None:
    """Every `blob_sweep_s`, remove the blobs released more than `blob_grace_s` ago."""
    while True:
        await asyncio.sleep(settings.blob_sweep_s)
        for blob in references.removable(settings.blob_grace_s):
            if await asyncio.to_thread(blobs.remove, blob):
                log.info("removed a blob no document uses any more: %s", blob)
            references.removed(blob)
