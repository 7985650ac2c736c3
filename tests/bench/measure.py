"""What `make bench` measures against a running ragbus (and the in-process baselines beside it).

Every figure is measured here, in this run; nothing is carried over from elsewhere.
"""

import asyncio
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from ragbus.adapters.edge_store import EdgeStore
from ragbus.ports import EmbeddingBackend, SearchRequest
from ragbus.sparse import encode_query
from ragbus_ops import client as api
from services.query.models import Citation
from services.query.transform import answer_messages

TENANT = "default"  # the bench stack runs without API keys
EMBED_CALL = 128  # texts per embedding call: about what one embedder batch of 16 events holds


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50, p95 and p99 (nearest rank) of `values`, rounded to 0.1."""
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))], 1)

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "n": len(ordered)}


def embedder_limit(backend: EmbeddingBackend, texts: Sequence[str]) -> float:
    """Chunks/s of the embedding backend alone, called as the embedder calls it."""
    backend.embed(list(texts[:16]))  # load and warm up
    started = time.perf_counter()
    for start in range(0, len(texts), EMBED_CALL):
        backend.embed(list(texts[start : start + EMBED_CALL]))
    return len(texts) / (time.perf_counter() - started)


@dataclass(frozen=True)
class PipelineRun:
    documents: int
    indexed: int
    failed: int
    chunks: int
    seconds: float

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.seconds


async def pipeline(urls: dict[str, str], files: list[api.LocalFile]) -> PipelineRun:
    """Upload `files` and follow them until each is final: chunks/s from the first upload to
    the last document indexed."""
    async with httpx.AsyncClient() as http:
        started = time.perf_counter()
        progress = await api.upload_and_follow(
            http, urls["ingest"], urls["status"], files, batch_size=25, stall_s=600
        )
        seconds = time.perf_counter() - started
    records = list(progress.final.values())
    indexed = [r for r in records if r["state"] == "INDEXED"]
    return PipelineRun(
        documents=len(files),
        indexed=len(indexed),
        failed=sum(1 for r in records if r["state"] == "FAILED"),
        chunks=sum(r.get("chunks") or 0 for r in indexed),
        seconds=seconds,
    )


async def freshness(urls: dict[str, str], documents: int) -> list[float]:
    """Upload→queryable seconds for single one-page documents, one at a time on an idle stack:
    from the upload request to the INDEXED state on the status stream, each then found by a
    query for its own unique word."""
    latencies = []
    async with httpx.AsyncClient(timeout=60) as http:
        for n in range(documents):
            word = f"fresh{uuid.uuid4().hex[:10]}"
            text = (
                f"# Release note {n}\n\nThe {word} flag turns on the new scheduler profile. "
                "It applies to every node pool once the control plane has been upgraded. "
                "Roll it back by clearing the flag and restarting the scheduler."
            )
            latencies.append(await _until_queryable(http, urls, word, text))
    return latencies


async def _until_queryable(
    http: httpx.AsyncClient, urls: dict[str, str], word: str, text: str
) -> float:
    indexed = asyncio.Event()
    ready = asyncio.Event()
    wanted: set[str] = set()

    async def watch() -> None:
        async for record in api.status_events(http, urls["status"], connected=ready):
            if record["document_id"] in wanted and record["state"] in api.TERMINAL:
                indexed.set()
                return

    watcher = asyncio.create_task(watch())
    try:
        await asyncio.wait_for(ready.wait(), 30)
        started = time.perf_counter()
        body = {"documents": [{"text": text, "title": f"bench/{word}", "metadata": {}}]}
        response = await http.post(f"{urls['ingest']}/v1/documents", json=body)
        response.raise_for_status()
        wanted.add(response.json()["documents"][0]["document_id"])
        await asyncio.wait_for(indexed.wait(), 120)
        seconds = time.perf_counter() - started
    finally:
        watcher.cancel()
    found = await _retrieve(http, urls["query"], word)
    if not any(word in citation["text"] for citation in found):
        raise AssertionError(f"{word}: INDEXED but not found by a query")
    return seconds


async def _retrieve(http: httpx.AsyncClient, query_url: str, question: str) -> list[Any]:
    body = {"question": question, "generate": False, "top_k": 5}
    response = await http.post(f"{query_url}/v1/query", json=body)
    response.raise_for_status()
    citations: list[Any] = response.json()["citations"]
    return citations


async def service_latency(
    query_url: str, questions: Sequence[str], concurrency: int
) -> list[float]:
    """Milliseconds per retrieval-only query through `POST /v1/query`, `concurrency` at a time
    (each from its request to its answer)."""
    latencies: list[float] = []
    pending = list(questions)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:

        async def worker() -> None:
            while pending:
                question = pending.pop()
                started = time.perf_counter()
                await _retrieve(http, query_url, question)
                latencies.append((time.perf_counter() - started) * 1000)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def baseline_latency(
    store_path: Path, embedder: EmbeddingBackend, questions: Sequence[str], concurrency: int
) -> list[float]:
    """Milliseconds per query done in process, with no service between: embed the question,
    hybrid search in the embedded engine (one search at a time, as the service's store runner
    does), by `concurrency` threads."""
    store = EdgeStore(store_path, "ragbus")
    searching = threading.Lock()

    def one(question: str) -> float:
        started = time.perf_counter()
        dense = embedder.embed([question])[0].tolist()
        request = SearchRequest(TENANT, 5, dense, encode_query(question))
        with searching:
            store.search(request)
        return (time.perf_counter() - started) * 1000

    try:
        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(one, questions))
    finally:
        store.close()


@dataclass(frozen=True)
class FirstToken:
    ragbus_ms: list[float]  # question n through ragbus
    bare_ms: list[float]  # question n's prompt, straight to the model (one fewer)

    def overhead_ms(self) -> float:
        """The median over questions of ragbus's time minus the bare model's on the same
        prompt: prompts differ in length, so only a paired difference isolates ragbus."""
        return median([r - b for r, b in zip(self.ragbus_ms, self.bare_ms, strict=False)])


async def first_token(
    urls: dict[str, str],
    llm_url: str,
    model: str,
    questions: Sequence[str],
    context_passages: int,
) -> FirstToken:
    """Time to the first answer token through `/v1/query/stream`, and from the bare language
    model given the very prompt ragbus built for the same question (its first
    `context_passages` hits, as the query service puts them in the prompt).

    Calls alternate so that each one follows a call with other passages: the server keeps the
    previous prompt's cache, and a repeat of it would skip the prompt's evaluation. So question
    n's prompt goes to the bare model after question n+1 went through ragbus.
    """
    async with httpx.AsyncClient(timeout=300) as http:
        prompts = []
        for question in questions:
            found = await _retrieve(http, urls["query"], question)
            passages = [Citation.model_validate(c) for c in found][:context_passages]
            prompts.append(answer_messages(question, passages))
        via_ragbus: list[float] = []
        bare: list[float] = []
        for n, question in enumerate(questions):
            via_ragbus.append(
                await _stream_first(
                    http, f"{urls['query']}/v1/query/stream", {"question": question}, "token"
                )
            )
            if n:
                body = {
                    "model": model,
                    "messages": prompts[n - 1],
                    "stream": True,
                    "max_tokens": 16,
                }
                bare.append(await _stream_first(http, f"{llm_url}/chat/completions", body, None))
    return FirstToken(via_ragbus, bare)


async def _stream_first(
    http: httpx.AsyncClient, url: str, body: dict[str, Any], event: str | None
) -> float:
    """Milliseconds from the request to the first streamed text: an SSE event named `event`,
    or (None) an OpenAI chunk with content. The stream is read to its end, so the model is
    idle again before the next call."""
    started = time.perf_counter()
    first: float | None = None
    async with http.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if first is None and _is_text(line, event):
                first = (time.perf_counter() - started) * 1000
    if first is None:
        raise AssertionError(f"{url}: the stream ended without text")
    return first


def _is_text(line: str, event: str | None) -> bool:
    """Whether an SSE line starts the first text: `event: <event>`, or (None) an OpenAI chunk
    whose delta has content."""
    if event is not None:
        return line == f"event: {event}"
    if not line.startswith("data:") or line.endswith("[DONE]"):
        return False
    choices = orjson.loads(line[5:]).get("choices") or [{}]
    return bool((choices[0].get("delta") or {}).get("content"))


def timed(work: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def median(values: Sequence[float]) -> float:
    return round(statistics.median(values), 1)


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
