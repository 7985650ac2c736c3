"""The evaluation run against the HTTP services: index the set, ask its questions, score them.

Everything goes through the public APIs, as a user's client would: documents through the
ingest API (scoped by the metadata `{"eval": <dataset name>}`), progress through the status
stream, questions through the query API with that metadata as the filter.
"""

import asyncio
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import orjson

from contracts.ids import sha256_of, upload_version
from ragbus.retry import retry
from ragbus_ops import client as api

from . import metrics
from .datasets import Dataset, Document, Question, sample

MODES = ("dense", "sparse", "hybrid")
RERANKED = "hybrid+rerank"
MAX_CHUNKS = 50  # the query service's default max_top_k
ERROR_SAMPLES = 5
ANSWER_TIMEOUT = httpx.Timeout(600, connect=10)  # a CPU model may queue and think a while
T = TypeVar("T")


@dataclass(frozen=True)
class Endpoints:
    ingest: str
    query: str
    status: str


@dataclass(frozen=True)
class Options:
    modes: tuple[str, ...] = MODES
    top_k: int = 10
    questions: int | None = None  # a seeded sample of this many; None: all
    answers: int = 200
    concurrency: int = 4
    # One at a time: a CPU model serves one request at a time anyway, and queueing behind
    # another question would count in this one's time to first token.
    answer_concurrency: int = 1
    seed: int = 0
    api_key: str | None = None
    upload_batch: int = 100
    stall_s: float = 600.0  # give up on documents when none finished for this long


class Reporter(Protocol):
    """Where the run tells its progress (the CLI draws it with rich; tests record it)."""

    def say(self, message: str) -> None: ...

    def begin(self, task: str, total: int) -> None: ...

    def advance(self, task: str, done: int = 1, note: str = "") -> None: ...


class QueryRefused(Exception):
    """The query service answered 4xx: the request itself is wrong, so asking again won't help."""


class _Transient(Exception):
    """A 5xx answer, retried like a dropped connection."""


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return detail if isinstance(detail, str) else orjson.dumps(detail).decode()


# ------------------------------------------------------------------------------------ indexing


@dataclass
class Indexing:
    documents: int
    reused: int = 0  # already INDEXED at the same version: not uploaded again
    uploaded: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # file name -> reason
    seconds: float = 0.0


def _version(document: Document, name: str) -> str:
    """The version the ingest gives the document as this runner uploads it."""
    return upload_version(sha256_of(document.text.encode()), None, _metadata(name))


def _metadata(name: str) -> dict[str, str]:
    """The metadata every document of the dataset `name` is uploaded with (and filtered by)."""
    return {"eval": name}


async def _current_states(http: httpx.AsyncClient, status_url: str) -> dict[str, dict[str, Any]]:
    response = await http.get(f"{status_url}/v1/documents", params={"limit": 100_000}, timeout=60)
    response.raise_for_status()
    documents: list[dict[str, Any]] = response.json()["documents"]
    return {record["filename"]: record for record in documents if record.get("filename")}


async def index_documents(
    http: httpx.AsyncClient, endpoints: Endpoints, dataset: Dataset, options: Options, r: Reporter
) -> Indexing:
    """Upload what the status service does not already show INDEXED at the same version, and
    follow the status stream until each upload is INDEXED or FAILED (or stalls)."""
    started = time.perf_counter()
    result = Indexing(len(dataset.documents))
    current = await _current_states(http, endpoints.status)
    todo = []
    for document in dataset.documents:
        record = current.get(document.filename) or {}
        if not document.text:
            result.failed[document.filename] = "empty document (the ingest API refuses it)"
        elif record.get("state") == "INDEXED" and record.get("version") == _version(
            document, dataset.name
        ):
            result.reused += 1
        else:
            todo.append(document)
    r.say(
        f"{result.reused} of {result.documents} documents already indexed at the same version; "
        f"uploading {len(todo)}"
    )
    if todo:
        progress = await _upload(http, endpoints, dataset.name, todo, options, r)
        result.uploaded = len(progress.expected)
        final_by_name = {progress.expected[i]: rec for i, rec in progress.final.items()}
        for document in todo:
            final = final_by_name.get(document.filename)
            if final is None:
                result.failed[document.filename] = (
                    f"no final state: nothing finished for {options.stall_s:.0f} s"
                )
            elif final["state"] != "INDEXED":
                result.failed[document.filename] = f"{final['state']}: {final.get('reason')}"
    result.seconds = round(time.perf_counter() - started, 1)
    return result


async def _upload(
    http: httpx.AsyncClient,
    endpoints: Endpoints,
    name: str,
    documents: list[Document],
    options: Options,
    r: Reporter,
) -> api.Progress:
    outcomes: Counter[str] = Counter()
    r.begin("upload", len(documents))
    r.begin("index", len(documents))

    def finished(record: dict[str, Any]) -> None:
        outcomes[record["state"]] += 1
        r.advance("index", 1, "  ".join(f"{k.lower()} {v}" for k, v in sorted(outcomes.items())))

    with tempfile.TemporaryDirectory(prefix="ragbus-eval-") as folder:
        files = []
        for document in documents:
            path = Path(folder) / document.filename
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(document.text.encode())
            files.append(api.LocalFile(path, document.filename))
        return await api.upload_and_follow(
            http,
            endpoints.ingest,
            endpoints.status,
            files,
            options.upload_batch,
            metadata=_metadata(name),
            on_final=finished,
            on_uploaded=lambda count: r.advance("upload", count),
            stall_s=options.stall_s,
        )


# ----------------------------------------------------------------------------------- retrieval


async def _post(http: httpx.AsyncClient, url: str, body: dict[str, Any]) -> tuple[Any, float]:
    """The answer's JSON and its client-side latency in ms; 5xx and dropped connections are
    retried, 4xx raises QueryRefused."""

    async def attempt() -> tuple[httpx.Response, float]:
        started = time.perf_counter()
        response = await http.post(url, json=body)
        if response.status_code >= 500:
            raise _Transient(f"HTTP {response.status_code}: {_detail(response)}")
        return response, (time.perf_counter() - started) * 1000

    response, latency = await retry(
        attempt, transient=(httpx.TransportError, _Transient), attempts=3, what="query"
    )
    if response.status_code != 200:
        raise QueryRefused(f"HTTP {response.status_code}: {_detail(response)}")
    return response.json(), latency


def ranked_sources(citations: list[dict[str, Any]]) -> list[str]:
    """Documents in the rank of their best chunk (a long document has several chunks)."""
    seen: dict[str, str] = {}
    for citation in citations:
        seen.setdefault(citation["document_id"], citation["source"])
    return list(seen.values())


@dataclass
class _ModeRun:
    rankings: list[list[str]]
    latencies_ms: list[float] = field(default_factory=list)
    server_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    cached: int = 0


async def _pool(items: Sequence[T], work: Callable[[int, T], Awaitable[None]], n: int) -> None:
    """`work` over the items with at most `n` at a time."""
    pending = iter(enumerate(items))

    async def worker() -> None:
        for index, item in pending:
            await work(index, item)

    await asyncio.gather(*(worker() for _ in range(n)))


async def retrieve(
    http: httpx.AsyncClient,
    query_url: str,
    dataset: Dataset,
    questions: list[Question],
    mode: str,
    request: dict[str, Any],
    options: Options,
    r: Reporter,
) -> dict[str, Any]:
    """Ask every question in one mode; the metrics, or {"skipped": reason} when the service
    refuses the mode's first question."""
    run = _ModeRun(rankings=[[] for _ in questions])
    chunks = min(max(2 * options.top_k, 20), MAX_CHUNKS)

    async def ask(index: int, question: Question) -> None:
        body = {
            "question": question.text,
            "top_k": chunks,
            "filters": _metadata(dataset.name),
            "generate": False,
            **request,
        }
        try:
            answer, latency = await _post(http, f"{query_url}/v1/query", body)
        except (QueryRefused, httpx.TransportError, _Transient) as exc:
            if index == 0 and isinstance(exc, QueryRefused):
                raise
            run.errors.append(str(exc) or type(exc).__name__)
        else:
            run.rankings[index] = ranked_sources(answer["citations"])[: options.top_k]
            run.latencies_ms.append(latency)
            run.cached += bool(answer.get("cached"))
            for step, ms in answer.get("timings_ms", {}).items():
                run.server_ms[step].append(ms)
        r.advance(mode, 1, f"{len(run.errors)} errors" if run.errors else "")

    r.begin(mode, len(questions))
    started = time.perf_counter()
    try:
        await ask(0, questions[0])  # alone: a refused mode stops here, not 10,000 times
    except QueryRefused as exc:
        return {"skipped": f"the query service refused it: {exc}"}
    await _pool(questions[1:], lambda i, q: ask(i + 1, q), options.concurrency)
    seconds = time.perf_counter() - started
    judgements = [question.judgements for question in questions]
    return {
        **metrics.score_rankings(run.rankings, judgements, options.top_k),
        "queries": len(questions),
        "errors": len(run.errors),
        "error_samples": sorted(set(run.errors))[:ERROR_SAMPLES],
        "cached": run.cached,
        "latency_ms": metrics.summary(run.latencies_ms),
        "server_ms": {step: metrics.summary(ms) for step, ms in sorted(run.server_ms.items())},
        "questions_per_s": round(len(questions) / seconds, 2),
    }


async def rerank_support(
    http: httpx.AsyncClient, query_url: str, dataset: Dataset, question: Question
) -> tuple[bool, str]:
    """Whether the service reranks by default (a reranker is configured), and what it said."""
    body = {
        "question": question.text,
        "top_k": 1,
        "filters": _metadata(dataset.name),
        "generate": False,
    }
    answer, _ = await _post(http, f"{query_url}/v1/query", body)
    rerank = answer.get("rerank")
    if not isinstance(rerank, dict):
        return False, "the query service does not report reranking"
    if rerank.get("applied"):
        return True, "applied" + (f" ({rerank['reason']})" if rerank.get("reason") else "")
    return False, str(rerank.get("reason") or "not applied")


# ------------------------------------------------------------------------------------- answers


@dataclass
class _Answer:
    text: str | None = None
    model: str | None = None
    cached: bool = False
    error: str | None = None
    first_token_ms: float | None = None
    total_ms: float = 0.0


async def stream_answer(http: httpx.AsyncClient, url: str, body: dict[str, Any]) -> _Answer:
    """One question through `/v1/query/stream`, timed from the request to the first `token`
    event and to the end of the stream."""
    result = _Answer()
    started = time.perf_counter()
    try:
        async with http.stream("POST", url, json=body, timeout=ANSWER_TIMEOUT) as response:
            if response.status_code != 200:
                await response.aread()
                result.error = f"HTTP {response.status_code}: {_detail(response)}"
            else:
                async for event, data in api.sse_events(response):
                    if event == "token" and result.first_token_ms is None:
                        result.first_token_ms = (time.perf_counter() - started) * 1000
                    elif event == "done":
                        result.text = data.get("answer") or ""
                        result.model = data.get("model")
                        result.cached = bool(data.get("cached"))
                    elif event == "error":
                        result.error = f"{data.get('stage')}: {data.get('message')}"
    except httpx.HTTPError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    result.total_ms = (time.perf_counter() - started) * 1000
    if result.error is None and result.text is None:
        result.error = "the stream ended without a done event"
    return result


async def answer_questions(
    http: httpx.AsyncClient,
    query_url: str,
    dataset: Dataset,
    questions: list[Question],
    mode: str,
    options: Options,
    r: Reporter,
) -> dict[str, Any]:
    """Generated answers on a seeded sample, scored with SQuAD's exact match and F1 (max over
    the gold answers, citation markers removed); a failed answer scores 0 and is counted."""
    answerable = [question for question in questions if question.answers]
    chosen = sample(answerable, options.answers, options.seed)
    if not chosen:
        reason = "no questions with gold answers" if not answerable else "--answers 0"
        return {"skipped": reason, "questions": 0}
    url = f"{query_url}/v1/query/stream"
    results: list[_Answer] = [_Answer() for _ in chosen]

    async def ask(index: int, question: Question) -> None:
        body = {"question": question.text, "filters": _metadata(dataset.name), "mode": mode}
        results[index] = await stream_answer(http, url, body)
        failed = sum(result.error is not None for result in results[: index + 1])
        r.advance("answers", 1, f"{failed} errors" if failed else "")

    r.begin("answers", len(chosen))
    await ask(0, chosen[0])
    first = results[0]
    if first.error is None and first.model is None:
        return {
            "skipped": "no language model is configured: the query service answered without "
            "one (model: null)",
            "questions": 0,
        }
    await _pool(chosen[1:], lambda i, q: ask(i + 1, q), options.answer_concurrency)
    return _score_answers(chosen, results, mode)


def _score_answers(chosen: list[Question], results: list[_Answer], mode: str) -> dict[str, Any]:
    scored = [
        (question, metrics.strip_citations(result.text or ""))
        for question, result in zip(chosen, results, strict=True)
    ]
    errors = [result.error for result in results if result.error is not None]
    models = Counter(result.model for result in results if result.model)
    return {
        "questions": len(chosen),
        "mode": mode,
        "exact_match": round(
            metrics.mean([metrics.exact_match(p, q.answers) for q, p in scored]), 4
        ),
        "f1": round(metrics.mean([metrics.f1(p, q.answers) for q, p in scored]), 4),
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:ERROR_SAMPLES],
        "cached": sum(result.cached for result in results),
        "first_token_ms": metrics.summary(
            [r.first_token_ms for r in results if r.first_token_ms is not None]
        ),
        "total_ms": metrics.summary([r.total_ms for r in results if r.error is None]),
        "model": models.most_common(1)[0][0] if models else None,
        "examples": [
            {"question": q.text, "answer": result.text, "scored": p, "gold": list(q.answers)}
            for (q, p), result in list(zip(scored, results, strict=True))[:ERROR_SAMPLES]
        ],
    }


# ---------------------------------------------------------------------------------- whole run


async def evaluate(
    dataset: Dataset, endpoints: Endpoints, options: Options, r: Reporter
) -> dict[str, Any]:
    """Index the set, ask its (sampled) questions in every mode, score retrieval and answers."""
    started = time.perf_counter()
    questions = sample(dataset.questions, options.questions, options.seed)
    if not questions:
        raise ValueError(f"{dataset.name} has no questions to ask")
    async with httpx.AsyncClient(
        headers=api.headers(options.api_key), timeout=httpx.Timeout(120, connect=10)
    ) as http:
        indexing = await index_documents(http, endpoints, dataset, options, r)
        r.say(
            f"indexing: {indexing.uploaded} uploaded, {indexing.reused} already indexed, "
            f"{len(indexing.failed)} failed, in {indexing.seconds} s"
        )
        reranks, rerank_note = await rerank_support(http, endpoints.query, dataset, questions[0])
        plan: dict[str, dict[str, Any]] = {mode: {"mode": mode} for mode in options.modes}
        skipped = {}
        if reranks:
            plan = {mode: {**request, "rerank": False} for mode, request in plan.items()}
            if "hybrid" in plan:
                plan[RERANKED] = {"mode": "hybrid", "rerank": True}
        else:
            skipped[RERANKED] = f"no reranker configured (the query service: {rerank_note})"
        modes: dict[str, Any] = {}
        for mode, request in plan.items():
            outcome = await retrieve(
                http, endpoints.query, dataset, questions, mode, request, options, r
            )
            if "skipped" in outcome:
                skipped[mode] = outcome["skipped"]
            else:
                modes[mode] = outcome
            r.say(f"{mode}: {_one_line(outcome)}")
        answer_mode = "hybrid" if "hybrid" in modes else next(iter(modes), "hybrid")
        answers = await answer_questions(
            http, endpoints.query, dataset, questions, answer_mode, options, r
        )
    return {
        "dataset": dataset.name,
        "documents": indexing.documents,
        "documents_failed": len(indexing.failed),
        "documents_reused": indexing.reused,
        "documents_uploaded": indexing.uploaded,
        "failures": [{"filename": n, "reason": why} for n, why in sorted(indexing.failed.items())],
        "indexing_s": indexing.seconds,
        "queries": len(questions),
        "top_k": options.top_k,
        "concurrency": options.concurrency,  # latency includes waiting behind the others
        "modes": modes,
        "skipped": skipped,
        "rerank": rerank_note,
        "answers": answers,
        "notes": dataset.notes,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def _one_line(outcome: dict[str, Any]) -> str:
    if "skipped" in outcome:
        return f"skipped — {outcome['skipped']}"
    shown = [f"{k} {v:.3f}" for k, v in outcome.items() if "@" in k or k == "mrr"]
    return ", ".join([*shown, f"{outcome['questions_per_s']} q/s"])


def write_report(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")


# ----------------------------------------------------------------------------------- the stack


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_replayed(status_url: str, api_key: str | None, quiet_s: float = 3.0) -> None:
    """A fresh status service folds its compacted topic from the start; wait until its count
    stops moving, so that what is already indexed is seen as such."""
    last, stable_since, deadline = -1, time.monotonic(), time.monotonic() + 120
    while time.monotonic() < deadline:
        response = httpx.get(
            f"{status_url}/v1/documents",
            params={"limit": 1},
            headers=api.headers(api_key),
            timeout=10,
        )
        count = sum(response.raise_for_status().json()["counts"].values())
        if count != last:
            last, stable_since = count, time.monotonic()
        elif time.monotonic() - stable_since >= quiet_s:
            return
        time.sleep(0.5)


@contextmanager
def stack_for(
    endpoints: Endpoints,
    data_dir: Path,
    generate: bool,
    say: Callable[[str], None],
    api_key: str | None = None,
) -> Iterator[Endpoints]:
    """The running stack when its services answer; else one started here on the services'
    configured ports with its own data dir, stopped at the end."""
    up = {name: _answers(url) for name, url in vars(endpoints).items()}
    if all(up.values()):
        say(f"using the running stack (query {endpoints.query})")
        yield endpoints
        return
    if any(up.values()):
        down = ", ".join(name for name, ok in up.items() if not ok)
        raise RuntimeError(f"part of a stack is running but {down} does not answer")
    from ragbus_ops.supervisor import Stack, StackSettings
    from services.registry import port_of

    say(f"no stack answers; starting one with data in {data_dir} (stopped at the end)")
    stack = Stack(StackSettings(data_dir=data_dir), llm=generate)
    try:
        stack.start()
        started = Endpoints(
            *(f"http://127.0.0.1:{port_of(name)}" for name in ("ingest", "query", "status"))
        )
        _wait_replayed(started.status, api_key)
        say(f"stack started: query {started.query}, logs in {data_dir / 'logs'}")
        yield started
    finally:
        stack.stop()
