"""Export the contracts as JSON Schema: `python -m contracts.schema OUT_DIR`."""

import sys
from pathlib import Path

import orjson

from contracts.events import EVENT_TYPES


def json_schemas() -> dict[str, dict[str, object]]:
    return {name: model.model_json_schema() for name, model in EVENT_TYPES.items()}


def write(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in json_schemas().items():
        path = out_dir / f"{name}.schema.json"
        path.write_bytes(orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        written.append(path)
    return written


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else "contracts/schemas"))
