"""`make bench`: ingestion throughput, freshness, query latency and memory of ragbus on this
machine, against the embedding model alone, an in-process baseline and a peer, in one run.

Order: the embedder alone on the Kubernetes pages' chunks; then a ragbus of its own
(`var/bench`, the default ports: stop `make up` first) ingests those pages; on the idle stack,
single-document freshness, retrieval latency at concurrency 1, 16 and 64 and the first token
through SSE against the bare language model; then the large corpus; the stack stops (peak
memory per process); then, on the quiet machine, the in-process retrieval baseline on a copy of
the index as it was when the service was measured, and the peer on the Kubernetes pages.
"""

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ragbus.adapters.embedding import create_backend
from ragbus_ops.client import LocalFile
from ragbus_ops.llm_server import MODEL_ALIAS
from ragbus_ops.supervisor import Stack, StackSettings
from services.embedder.settings import EmbedderSettings
from services.query.settings import QuerySettings
from services.registry import port_of

from . import corpora, measure, report

CONCURRENCY = (1, 16, 64)
SERVICES = ("ingest", "query", "status", "indexer")
TITLE = re.compile(r"^title:\s*[\"']?(.+?)[\"']?\s*$", re.MULTILINE)


def questions_from(files: Sequence[LocalFile]) -> list[str]:
    """The pages' titles, as questions a reader of the docs would search with."""
    titles = (TITLE.search(f.path.read_text(errors="replace")) for f in files)
    return [match.group(1) for match in titles if match]


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=None, help="only the first N k8s pages")
    parser.add_argument("--copies", type=int, default=4, help="k8s copies in the large corpus")
    parser.add_argument("--no-large", action="store_true", help="skip the large corpus")
    parser.add_argument("--no-peer", action="store_true", help="skip the LlamaIndex peer")
    parser.add_argument("--freshness", type=int, default=30, help="single documents")
    parser.add_argument("--questions", type=int, default=200, help="per concurrency level")
    parser.add_argument("--first-tokens", type=int, default=12, help="questions answered")
    parser.add_argument("--data-dir", type=Path, default=corpora.REPO / "var" / "bench")
    parser.add_argument("--reports", type=Path, default=corpora.REPO / "reports")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if not corpora.K8S_DOCS.is_dir() or not corpora.SQUAD_DEV.is_file():
        print(f"the benchmark needs the shared data in {corpora.SHARED}", file=sys.stderr)
        return 2
    figures: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    k8s = corpora.k8s(args.pages)
    questions = questions_from(k8s.files)

    print("embedder alone on the k8s chunks…", flush=True)
    texts = [text for document in corpora.chunk_texts(k8s.files) for text in document]
    settings = EmbedderSettings()
    backend = create_backend(
        None, settings.embed_threads, settings.embed_batch_size, settings.embed_model
    )
    figures["embedder"] = backend.name
    figures["embedder_limit_cps"] = round(measure.embedder_limit(backend, texts), 1)
    figures["limit_chunks"] = len(texts)
    backend.close()
    print(f"  {figures['embedder_limit_cps']} chunks/s over {len(texts)} chunks", flush=True)

    data_dir = args.data_dir.resolve()
    shutil.rmtree(data_dir, ignore_errors=True)
    os.environ["RAGBUS_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("RAGBUS_LLM_MAX_TOKENS", "48")  # first tokens are what is timed
    # The questions repeat across concurrency levels: every query must do its work.
    os.environ.setdefault("RAGBUS_CACHE_ENTRIES", "0")
    stack = Stack(StackSettings())
    urls = {service: f"http://127.0.0.1:{port_of(service)}" for service in SERVICES}
    runs: dict[str, Any] = {}
    with corpora.scratch_dir() as scratch:
        try:
            stack.start()
            _on_the_stack(stack, urls, k8s, questions, args, Path(scratch), figures, runs)
        finally:
            stack.stop()
    figures["peak_rss_mb"] = json.loads((data_dir / "peak-rss.json").read_text())

    print("in-process baseline…", flush=True)
    query_settings = QuerySettings()
    embedder = create_backend(
        None, query_settings.embed_threads, batch_size=1, model=query_settings.embed_model
    )
    baseline_store = data_dir / "index-baseline"
    figures["query"]["baseline"] = {
        str(level): measure.percentiles(
            measure.baseline_latency(
                baseline_store, embedder, _asked(questions, args, level), level
            )
        )
        for level in CONCURRENCY
    }
    embedder.close()
    figures["baseline_p50_ms"] = figures["query"]["baseline"]["1"]["p50"]
    figures["retrieval_ratio"] = round(figures["retrieval_p50_ms"] / figures["baseline_p50_ms"], 2)

    figures["peer_cps"] = figures["ratio_to_peer"] = None
    if not args.no_peer:
        from .peer import run_peer

        print("peer (LlamaIndex) on the k8s pages…", flush=True)
        peer = run_peer(k8s.files, data_dir / "peer")
        runs["peer_k8s"] = {
            "documents": peer.documents,
            "chunks": peer.chunks,
            "seconds": round(peer.seconds, 1),
        }
        figures["peer_cps"] = round(peer.chunks_per_second, 1)
        figures["ratio_to_peer"] = round(figures["pipeline_cps"] / figures["peer_cps"], 2)
    figures["runs"] = runs
    report.write(args.reports, figures)
    print((args.reports / "bench.md").read_text())
    return 0


def _asked(questions: list[str], args: argparse.Namespace, level: int) -> list[str]:
    """The questions asked at a concurrency level: enough for every worker to ask several."""
    wanted: int = max(args.questions, 4 * level)
    return (questions * (wanted // len(questions) + 1))[:wanted]


def _on_the_stack(
    stack: Stack,
    urls: dict[str, str],
    k8s: corpora.Corpus,
    questions: list[str],
    args: argparse.Namespace,
    scratch: Path,
    figures: dict[str, Any],
    runs: dict[str, Any],
) -> None:
    print("pipeline on the k8s pages…", flush=True)
    run = asyncio.run(measure.pipeline(urls, k8s.files))
    runs["pipeline_k8s"] = _run(run)
    figures["pipeline_cps"] = round(run.chunks_per_second, 1)
    figures["ratio_to_limit"] = round(run.chunks_per_second / figures["embedder_limit_cps"], 2)

    time.sleep(5)  # idle
    print("freshness…", flush=True)
    fresh = asyncio.run(measure.freshness(urls, args.freshness))
    freshness = measure.percentiles(fresh)
    figures["freshness_p50_s"], figures["freshness_p95_s"] = freshness["p50"], freshness["p95"]
    figures["freshness_s"] = [round(s, 3) for s in fresh]

    # The index as the service is measured on, for the in-process baseline after the stack.
    shutil.copytree(stack.data_dir / "index", stack.data_dir / "index-baseline")
    print("retrieval through the service…", flush=True)
    figures["query"] = {
        "service": {
            str(level): measure.percentiles(
                asyncio.run(
                    measure.service_latency(urls["query"], _asked(questions, args, level), level)
                )
            )
            for level in CONCURRENCY
        }
    }
    figures["retrieval_p50_ms"] = figures["query"]["service"]["1"]["p50"]

    print("first tokens: through ragbus and from the bare model…", flush=True)
    llm = stack.llm_env()
    tokens = asyncio.run(
        measure.first_token(
            urls,
            llm["LLM_URL"],
            llm.get("LLM_MODEL") or MODEL_ALIAS,
            questions[: args.first_tokens],
            QuerySettings().context_passages,
        )
    )
    figures["first_token_ms"] = {
        "ragbus": measure.percentiles(tokens.ragbus_ms),
        "bare_model": measure.percentiles(tokens.bare_ms),
    }
    figures["ttft_overhead_ms"] = tokens.overhead_ms()

    figures["pipeline_large_cps"] = None
    if not args.no_large:
        large = corpora.large(k8s, args.copies, scratch)
        print(f"pipeline on the large corpus ({large.name})…", flush=True)
        big = asyncio.run(measure.pipeline(urls, large.files))
        runs["pipeline_large"] = {**_run(big), "corpus": large.name}
        figures["pipeline_large_cps"] = round(big.chunks_per_second, 1)


def _run(run: measure.PipelineRun) -> dict[str, Any]:
    return {
        "documents": run.documents,
        "indexed": run.indexed,
        "failed": run.failed,
        "chunks": run.chunks,
        "seconds": round(run.seconds, 1),
        "chunks_per_second": round(run.chunks_per_second, 1),
    }


if __name__ == "__main__":
    raise SystemExit(main())
