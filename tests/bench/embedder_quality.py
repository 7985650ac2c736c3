"""What an int8 model costs in quality, against the fp32 model it approximates, offline.

1. Agreement: the cosine between each int8 model's vector and the fp32 model's vector of the same
   chunk, over a seeded sample of the k8s chunks (mean, 1st percentile, minimum).
2. Retrieval: SQuAD dev as `ragbus eval squad` runs it in the dense mode, without a stack: every
   paragraph split by the chunker's transform and embedded, each question embedded, paragraphs
   ranked by their best chunk's cosine (brute force, as embedded Qdrant ranks), scored with the
   same metric functions (`ragbus_ops.eval.metrics.score_rankings`).

Texts are embedded as the services embed them: passages in micro-batches of the embedder's
`RAGBUS_EMBED_BATCH_SIZE`, questions one at a time (the query service's batch of 1); the int8
models built here run one text per run (`OnnxModel.one_text_per_run`).

    .venv/bin/python -m tests.bench.embedder_quality --out reports/embedder-quality.json
"""

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ragbus.adapters.embedding.onnx_backend import OnnxEmbedder, OnnxModel
from ragbus.settings import EmbeddingSettings
from ragbus_ops.client import LocalFile
from ragbus_ops.eval.datasets import Dataset, load_squad, sample
from ragbus_ops.eval.metrics import score_rankings

from . import corpora
from .embedder import RECIPES, k8s_sample, variants

TOP_K = 10
Matrix = npt.NDArray[np.float32]


def embed(model: OnnxModel, texts: Sequence[str], batch_size: int) -> Matrix:
    backend = OnnxEmbedder(intra_op_num_threads=2, batch_size=batch_size, model=model)
    try:
        return backend.embed(list(texts))
    finally:
        backend.close()


def agreement(vectors: Matrix, reference: Matrix) -> dict[str, float]:
    cosines = np.sum(vectors * reference, axis=1)
    return {
        "mean": round(float(cosines.mean()), 5),
        "p1": round(float(np.percentile(cosines, 1)), 5),
        "min": round(float(cosines.min()), 5),
    }


def squad_chunks(dataset: Dataset, scratch: Path) -> tuple[list[str], list[str]]:
    """Each paragraph's chunks as the chunker makes them, and the paragraph each belongs to."""
    files: list[LocalFile] = []
    for document in dataset.documents:
        path = scratch / f"{len(files)}.txt"
        path.write_text(document.text)
        files.append(LocalFile(path, document.filename))
    texts, owners = [], []
    for file, chunks in zip(files, corpora.chunk_texts(files), strict=True):
        texts += chunks
        owners += [file.name] * len(chunks)
    return texts, owners


def dense_scores(
    model: OnnxModel,
    dataset: Dataset,
    chunks: Sequence[str],
    owners: Sequence[str],
    batch_size: int,
) -> dict[str, float]:
    """recall@k, MRR and nDCG@10 of the dense ranking: paragraphs by their best chunk (a
    paragraph's chunks are contiguous in `chunks`)."""
    names = list(dict.fromkeys(owners))
    starts = np.flatnonzero([n == 0 or owners[n] != owners[n - 1] for n in range(len(owners))])
    passages = embed(model, chunks, batch_size)
    queries = embed(model, [q.text for q in dataset.questions], 1)
    rankings = []
    for start in range(0, len(queries), 512):
        best = np.maximum.reduceat(queries[start : start + 512] @ passages.T, starts, axis=1)
        top = np.argsort(-best, axis=1, kind="stable")[:, :TOP_K]
        rankings += [[names[i] for i in row] for row in top]
    return score_rankings(rankings, [q.judgements for q in dataset.questions], TOP_K)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=1200, help="k8s chunks for agreement")
    parser.add_argument("--questions", type=int, default=None, help="a seeded sample (all)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--variants", default=",".join(RECIPES), help="recipe names, comma-separated"
    )
    parser.add_argument("--out", type=Path, default=Path("reports/embedder-quality.json"))
    args = parser.parse_args(argv)
    squad = load_squad(corpora.SQUAD_DEV)
    squad = Dataset(squad.name, squad.documents, sample(squad.questions, args.questions, args.seed))
    k8s = k8s_sample(args.chunks)
    batch = EmbeddingSettings().embed_batch_size
    report: dict[str, Any] = {
        "k8s_chunks": len(k8s),
        "questions": len(squad.questions),
        "batch_size": batch,
    }
    with corpora.scratch_dir() as scratch:
        chunks, owners = squad_chunks(squad, Path(scratch))
    report["squad_chunks"] = len(chunks)
    names = list(dict.fromkeys(["fp32", *args.variants.split(",")]))  # fp32 is the reference
    with variants(names) as models:
        reference = embed(models["fp32"], k8s, batch)
        for name, model in models.items():
            row = {"retrieval": dense_scores(model, squad, chunks, owners, batch)}
            if name != "fp32":
                row["agreement"] = agreement(embed(model, k8s, batch), reference)
            report[name] = row
            print(name, json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
