"""Composition root of the chunker service."""

import asyncio
from dataclasses import dataclass
from functools import partial

from fastapi import FastAPI
from tokenizers import Tokenizer

from contracts.events import ChunksReady, DocumentUploaded, GenerationPlan
from contracts.topics import CHUNKS_READY, DOCUMENT_UPLOADED
from ragbus.adapters.blobs import read_blob
from ragbus.adapters.embedding.model_files import load_tokenizer
from ragbus.bus import Bus, create_broker
from ragbus.service import Hook, create_service_app

from .handlers import ReadBlob, Split
from .sandbox import Sandbox
from .settings import ChunkerSettings, get_settings
from .subscriber import GROUP, SplitFor, register
from .transform import chunk_document

__all__ = ["ChunkerAdapters", "create_app", "get_settings"]


@dataclass(frozen=True)
class ChunkerAdapters:
    """The chunker's ports, each built from the settings when left None: `read` (a blob's
    bytes, within the readable roots), `split` (a document's chunks: parsing in the sandbox's
    worker processes with the settings' limits, token counts from `tokenizer`, the embedding
    model's, without truncation or padding)."""

    read: ReadBlob | None = None
    split: Split | None = None
    tokenizer: Tokenizer | None = None


def _same(split: Split, plan: GenerationPlan | None) -> Split:
    """A split given from outside, whatever the generation (tests)."""
    return split


def create_app(settings: ChunkerSettings, adapters: ChunkerAdapters | None = None) -> FastAPI:
    given = adapters or ChunkerAdapters()
    owned: list[Hook] = []

    def read(uri: str, tenant_id: str) -> bytes:
        roots = settings.readable_blob_roots
        return read_blob(uri, settings.max_blob_bytes, roots, tenant_id, settings.blob_dir)

    split_for: SplitFor
    if given.split is not None:
        split_for = partial(_same, given.split)
    else:
        tokenizer = given.tokenizer or load_tokenizer(max_tokens=0, pad=False)
        # Parsing runs in worker processes: a hostile file costs a worker, not the chunker.
        sandbox = Sandbox(settings.sandbox_limits(), settings.extract_workers, resident=[tokenizer])
        limits = settings.limits()

        def split_for(plan: GenerationPlan | None) -> Split:
            options = settings.split(plan)

            def split(event: DocumentUploaded, data: bytes) -> list[ChunksReady]:
                return sandbox.run(chunk_document, event, data, tokenizer, limits=limits, **options)

            return split

        async def stop_workers() -> None:
            await asyncio.to_thread(sandbox.close)

        owned.append(stop_workers)
    broker = create_broker(settings, "chunker")
    register(
        broker,
        Bus(broker, "chunker", {CHUNKS_READY: ChunksReady}, [DOCUMENT_UPLOADED]),
        given.read or read,
        split_for,
    )
    return create_service_app(
        "chunker",
        settings,
        broker=broker,
        lag=(GROUP, DOCUMENT_UPLOADED),
        shutdown=owned,
        description="Health and metrics only.",
    )
