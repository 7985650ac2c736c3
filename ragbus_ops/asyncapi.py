"""An AsyncAPI document of every stage, generated from the FastStream brokers the services build:
`python -m ragbus_ops.asyncapi OUT.json`."""

import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
from faststream.specification import AsyncAPI

from services.registry import SERVICES

STAGES = ("ingest", "chunker", "embedder", "indexer", "status", "query")


def document() -> dict[str, Any]:
    """Build each stage's app (on throwaway storage) and describe its subscribers and publishers."""
    spec: AsyncAPI | None = None
    with tempfile.TemporaryDirectory() as scratch:
        for stage in STAGES:
            main = SERVICES[stage]
            settings = main.get_settings().model_copy(update={"data_dir": Path(scratch) / stage})
            broker = main.create_app(settings=settings).state.broker
            if spec is None:
                spec = AsyncAPI(broker, title="ragbus", description=__doc__)
            else:
                spec.add_broker(broker)
    assert spec is not None
    jsonable: dict[str, Any] = spec.to_specification().to_jsonable()
    return jsonable


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "contracts/asyncapi.json")
    out.write_bytes(orjson.dumps(document(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
