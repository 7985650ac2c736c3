"""An AsyncAPI document of every stage, generated from the FastStream brokers the services build:
`python -m ragbus_ops.asyncapi OUT.json`."""

import asyncio
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from faststream.specification import AsyncAPI

from contracts.events import ChunksReady, DocumentUploaded
from ragbus.adapters.store import StoreRunner
from ragbus.adapters.stores import open_store
from ragbus.ports import Vectors
from services.chunker import main as chunker
from services.embedder import main as embedder
from services.indexer import main as indexer
from services.query import main as query
from services.registry import SERVICES

STAGES = ("ingest", "chunker", "embedder", "indexer", "status", "query")


class _NoModel:
    """The embedding port of an app that never consumes a message nor answers a question: the
    document needs the apps' brokers only, so no model is loaded."""

    name = "none"
    dimensions = 0

    def embed(self, texts: Sequence[str]) -> Vectors:
        raise RuntimeError(f"the AsyncAPI generator's apps embed nothing ({len(texts)} texts)")

    def close(self) -> None:
        return None


def _no_split(event: DocumentUploaded, data: bytes) -> list[ChunksReady]:
    raise RuntimeError("the AsyncAPI generator's apps parse nothing")


def _adapters(store: StoreRunner) -> dict[str, object]:
    """Ports that need no model file and start no process: no parser, no embedding model, and
    one store on throwaway storage for the indexer and the query service."""
    return {
        "chunker": chunker.ChunkerAdapters(split=_no_split),
        "embedder": embedder.EmbedderAdapters(embedder=_NoModel()),
        "indexer": indexer.IndexerAdapters(store=store),
        "query": query.QueryAdapters(store=store, embedder=_NoModel()),
    }


def document() -> dict[str, Any]:
    """Build each stage's app (on throwaway storage) and describe its subscribers and publishers."""
    spec: AsyncAPI | None = None
    with tempfile.TemporaryDirectory() as scratch:
        store = open_store(indexer.get_settings().model_copy(update={"data_dir": Path(scratch)}))
        adapters = _adapters(store)
        try:
            for stage in STAGES:
                main = SERVICES[stage]
                # The same document whoever generates it: no sign-in from the environment.
                settings = main.get_settings().model_copy(
                    update={"data_dir": Path(scratch) / stage, "kafka_username": ""}
                )
                app = main.create_app(settings, adapters.get(stage))
                if spec is None:
                    spec = AsyncAPI(app.state.broker, title="ragbus", description=__doc__)
                else:
                    spec.add_broker(app.state.broker)
        finally:
            asyncio.run(store.close())
    assert spec is not None
    jsonable: dict[str, Any] = spec.to_specification().to_jsonable()
    return jsonable


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "contracts/asyncapi.json")
    out.write_bytes(orjson.dumps(document(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
