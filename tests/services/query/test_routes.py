"""The query service's HTTP API in-process, over real embedded Qdrant, the real embedding model and
the session's real Kafka broker. The language model is a scripted fake here (the real llama.cpp
server is exercised end to end in tests/e2e/test_query.py), except where the point is a real
network failure."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence

import openai
import orjson
import pytest

from contracts.topics import INDEX_PROMOTED
from deploy.kafka.launcher import free_ports
from ragbus.adapters.llm import OpenAiChat
from ragbus.adapters.store import QdrantStore
from ragbus.bus import create_broker, encode
from ragbus.ports import Message, Point, RerankError
from ragbus.settings import KafkaSettings
from ragbus.sparse import encode_document
from services.query.transform import NO_PASSAGES
from tests.events import index_promoted

pytestmark = pytest.mark.integration

KEYS = {"key-acme": "acme", "key-beta": "beta", "key-empty": "gamma"}
DOCUMENTS = {
    "acme": [
        ("etcd.md", "Etcd is the consistent key-value store that holds all cluster state."),
        ("scheduler.md", "The kube-scheduler assigns newly created pods to nodes."),
        ("kubelet.md", "The kubelet runs on every node and starts the pod's containers."),
    ],
    "beta": [
        ("secret-etcd.md", "Beta's private note: our etcd backups live in bucket beta-7."),
        ("payroll.md", "Beta payroll runs on the first Monday of each month."),
    ],
}


class ScriptedChat:
    """A `ChatModel` that streams prepared answers and records the prompts it got."""

    name = "scripted"

    def __init__(self, *answers: Sequence[str]) -> None:
        self.answers = list(answers)
        self.prompts: list[list[Message]] = []

    async def stream(
        self, messages: list[Message], *, max_tokens: int, temperature: float = 0.0
    ) -> AsyncIterator[str]:
        self.prompts.append(messages)
        for delta in self.answers.pop(0):
            yield delta

    async def close(self) -> None:
        return None


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, embedder):
    """Embedded storage holding both tenants' passages, indexed as the indexer would."""
    path = tmp_path_factory.mktemp("query")
    store = QdrantStore.connect(None, path / "qdrant", "ragbus")
    store.ensure_collection(embedder.dimensions)
    points = []
    for tenant, documents in DOCUMENTS.items():
        texts = [text for _, text in documents]
        for (source, text), vector in zip(documents, embedder.embed(texts), strict=True):
            points.append(
                Point(
                    id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/{source}")),
                    vector=vector.tolist(),
                    sparse=encode_document(text),
                    payload={
                        "tenant_id": tenant,
                        "document_id": f"{tenant}-{source}",
                        "version": "v1",
                        "source": source,
                        "text": text,
                        "metadata": {"kind": "guide"},
                    },
                )
            )
    store.upsert(points)
    for document in {point.payload["document_id"] for point in points}:
        store.promote(document, "v1")
    store.close()
    return path


@pytest.fixture(scope="module")
def api_keys():
    return KEYS


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def sse(body: bytes) -> list[tuple[str, dict]]:
    events = []
    for block in body.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            events.append((lines["event"], orjson.loads(lines["data"])))
    return events


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
async def test_a_tenant_never_gets_another_tenants_chunks(service, mode):
    client = await service()
    question = {"question": "where are the etcd backups and cluster state", "top_k": 10}
    for key, tenant in (("key-acme", "acme"), ("key-beta", "beta")):
        response = await client.post(
            "/v1/query", json={**question, "mode": mode, "generate": False}, headers=auth(key)
        )
        assert response.status_code == 200, response.text
        sources = {c["source"] for c in response.json()["citations"]}
        assert sources, f"{tenant} found nothing in {mode} mode"
        assert sources <= {source for source, _ in DOCUMENTS[tenant]}


async def test_the_tenant_comes_from_the_key_never_from_the_body(service):
    client = await service()
    response = await client.post("/v1/query", json={"question": "etcd"}, headers=auth("nope"))
    assert response.status_code == 401
    response = await client.post(
        "/v1/query", json={"question": "etcd", "tenant_id": "beta"}, headers=auth("key-acme")
    )
    assert response.status_code == 422


async def test_an_empty_index_gives_a_clear_answer(service):
    client = await service(llm=ScriptedChat())
    response = await client.post("/v1/query", json={"question": "etcd?"}, headers=auth("key-empty"))
    assert response.status_code == 200
    assert response.json()["answer"] == NO_PASSAGES
    assert response.json()["citations"] == []
    stream = await client.post(
        "/v1/query/stream", json={"question": "etcd?"}, headers=auth("key-empty")
    )
    events = sse(stream.content)
    assert [name for name, _ in events] == ["retrieval", "token", "done"]
    assert events[-1][1]["answer"] == NO_PASSAGES


async def test_tokens_stream_and_citations_name_real_chunks(service):
    llm = ScriptedChat(["Etcd", " holds", " cluster state", " [1", "]."])
    client = await service(llm=llm)
    stream = await client.post(
        "/v1/query/stream",
        json={"question": "What holds the cluster state?", "top_k": 3},
        headers=auth("key-acme"),
    )
    events = sse(stream.content)
    names = [name for name, _ in events]
    assert names[0] == "retrieval" and names[-1] == "done"
    assert [data["text"] for name, data in events if name == "token"] == [
        "Etcd",
        " holds",
        " cluster state",
        " [1",
        "].",
    ]
    passages = events[0][1]["passages"]
    assert passages[0]["source"] == "etcd.md"
    citation = next(data for name, data in events if name == "citation")
    assert citation == passages[0]
    assert events[-1][1]["answer"] == "Etcd holds cluster state [1]."
    assert events[-1][1]["citations"] == [passages[0]]
    prompt = llm.prompts[0][-1]["content"]
    assert '<passage n="1" source="etcd.md">' in prompt
    assert prompt.endswith("What holds the cluster state?")


async def test_an_answer_that_cites_nothing_is_attributed_to_its_passage(service):
    client = await service(llm=ScriptedChat(["The kube-scheduler", " assigns pods to nodes."]))
    stream = await client.post(
        "/v1/query/stream", json={"question": "What assigns pods?"}, headers=auth("key-acme")
    )
    events = sse(stream.content)
    assert [name for name, _ in events][-2:] == ["citation", "done"]
    assert events[-2][1]["source"] == "scheduler.md"
    assert events[-1][1]["citations"] == [events[-2][1]]


async def test_an_unreachable_model_gives_an_error_event_within_the_timeout(service):
    (port,) = free_ports(1)
    llm = OpenAiChat(f"http://127.0.0.1:{port}/v1", "m", total_timeout_s=3.0, backoff_s=0.05)
    client = await service(llm=llm)
    started = time.monotonic()
    stream = await client.post(
        "/v1/query/stream", json={"question": "What is etcd?"}, headers=auth("key-acme")
    )
    events = sse(stream.content)
    assert time.monotonic() - started < 3.0 + 2.0
    assert [name for name, _ in events] == ["retrieval", "error"]
    assert events[-1][1]["stage"] == "generate"
    assert "unreachable" in events[-1][1]["message"]
    response = await client.post(
        "/v1/query", json={"question": "What is etcd?"}, headers=auth("key-acme")
    )
    assert response.status_code == 502


async def test_a_silent_model_gives_an_error_event_within_the_timeout(service):
    async def silent(reader, writer):
        await reader.read()  # never answers; returns when the client gives up

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    llm = OpenAiChat(f"http://127.0.0.1:{port}/v1", "m", delta_timeout_s=1.0, total_timeout_s=2.0)
    client = await service(llm=llm)
    started = time.monotonic()
    stream = await client.post(
        "/v1/query/stream", json={"question": "What is etcd?"}, headers=auth("key-acme")
    )
    assert time.monotonic() - started < 2.0 + 2.0
    assert sse(stream.content)[-1][0] == "error"
    server.close()


async def test_the_answer_is_cached_until_the_index_changes(service, kafka_broker):
    llm = ScriptedChat(["first [1]"], ["second [1]"])
    client = await service(llm=llm)
    ask = {"question": "What runs containers on a node?"}
    first = (await client.post("/v1/query", json=ask, headers=auth("key-acme"))).json()
    again = await client.post(
        "/v1/query",
        json={"question": "  what runs containers on a node "},
        headers=auth("key-acme"),
    )
    assert (first["cached"], again.json()["cached"]) == (False, True)
    assert again.json()["answer"] == "first [1]"
    other = await client.post("/v1/query", json=ask, headers=auth("key-beta"))
    assert other.json()["cached"] is False, "another tenant must not get acme's cached answer"
    llm.answers.append(["beta"])

    broker = create_broker(KafkaSettings(kafka_bootstrap=kafka_broker), "test")
    async with broker:
        await broker.start()
        promoted = index_promoted("acme-kubelet.md", version="v2")
        await broker.publish(encode(promoted), INDEX_PROMOTED, key=b"acme-kubelet.md")
    deadline = time.monotonic() + 30
    while True:
        response = (await client.post("/v1/query", json=ask, headers=auth("key-acme"))).json()
        if not response["cached"]:
            break
        assert time.monotonic() < deadline, "index.promoted did not drop the cache"
        await asyncio.sleep(0.2)
    assert response["answer"] in ("second [1]", "beta")


async def test_a_follow_up_is_rewritten_from_the_conversation_which_survives_a_restart(service):
    conversation = f"c-{uuid.uuid4().hex}"
    llm = ScriptedChat(["The kubelet [1]."], ["Which node component starts pod containers?"])
    client = await service(llm=llm)
    first = {"question": "What does the kubelet do?", "conversation_id": conversation}
    assert (await client.post("/v1/query", json=first, headers=auth("key-acme"))).status_code == 200
    follow = {"question": "Where does it run?", "conversation_id": conversation, "generate": False}
    response = (await client.post("/v1/query", json=follow, headers=auth("key-acme"))).json()
    assert response["question"] == "Which node component starts pod containers?"
    assert "User: What does the kubelet do?" in llm.prompts[1][1]["content"]
    assert response["citations"][0]["source"] == "kubelet.md"

    # A fresh replica replays the conversation from the topic; another tenant cannot use it.
    replica = await service(llm=ScriptedChat(["Where does the kubelet run?"]))
    again = (await replica.post("/v1/query", json=follow, headers=auth("key-acme"))).json()
    assert again["question"] == "Where does the kubelet run?"
    beta = (await replica.post("/v1/query", json=follow, headers=auth("key-beta"))).json()
    assert beta["question"] == "Where does it run?"


async def test_rerank_is_skipped_with_a_reason_when_no_reranker_is_configured(service):
    client = await service()
    response = await client.post(
        "/v1/query",
        json={"question": "etcd", "rerank": True, "generate": False},
        headers=auth("key-acme"),
    )
    assert response.json()["rerank"] == {
        "applied": False,
        "reason": "skipped: no reranker (RERANK_URL unset)",
    }


async def test_a_reranker_reorders_the_passages(service):
    class Reversed:
        async def scores(self, query, texts):
            return [float(i) for i in range(len(texts))]

        async def close(self):
            return None

    client = await service(reranker=Reversed())
    plain = await client.post(
        "/v1/query",
        json={"question": "etcd cluster state", "rerank": False, "generate": False, "top_k": 3},
        headers=auth("key-acme"),
    )
    reranked = await client.post(
        "/v1/query",
        json={"question": "etcd cluster state", "generate": False, "top_k": 3},
        headers=auth("key-acme"),
    )
    assert reranked.json()["rerank"]["applied"] is True
    order = [c["chunk_id"] for c in plain.json()["citations"]]
    assert [c["chunk_id"] for c in reranked.json()["citations"]] == order[::-1]


async def test_the_openai_sdk_gets_answers_streamed_and_whole(service):
    llm = ScriptedChat(["Etcd", " [1]."], ["Etcd [1]."])
    client = await service(llm=llm)
    sdk = openai.AsyncOpenAI(
        api_key="key-acme", base_url="http://query/v1", http_client=client, max_retries=0
    )
    assert [m.id for m in (await sdk.models.list()).data] == ["ragbus"]
    stream = await sdk.chat.completions.create(
        model="ragbus",
        messages=[{"role": "user", "content": "What holds the cluster state?"}],
        stream=True,
    )
    deltas = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]
    assert "".join(d for d in deltas if d) == "Etcd [1]."
    whole = await sdk.chat.completions.create(
        model="ragbus", messages=[{"role": "user", "content": "What holds the state?"}]
    )
    assert whole.choices[0].message.content == "Etcd [1]."
    assert whole.model_extra["citations"][0]["source"] == "etcd.md"
    with pytest.raises(openai.NotFoundError):
        await sdk.chat.completions.create(
            model="gpt-4", messages=[{"role": "user", "content": "hi"}]
        )


async def test_a_failing_reranker_keeps_the_fused_order_and_says_so(service):
    class Broken:
        async def scores(self, query, texts):
            raise RerankError("the reranker at http://tei failed: 503")

        async def close(self):
            return None

    client = await service(reranker=Broken())
    response = await client.post(
        "/v1/query", json={"question": "etcd", "generate": False}, headers=auth("key-acme")
    )
    assert response.status_code == 200
    assert response.json()["rerank"]["applied"] is False
    assert "failed, fused order kept" in response.json()["rerank"]["reason"]
    assert response.json()["citations"]


@pytest.mark.parametrize(
    ("odd", "named"),
    [
        ({"filters": {"kind": 1.5}}, "filters"),
        ({"filters": {"kind": None}}, "filters"),
        ({"filters": {"kind": 2**64}}, "filters"),
        ({"top_k": 2**64}, "top_k"),
        ({"top_k": 10**30}, "top_k"),
    ],
)
@pytest.mark.parametrize("route", ["/v1/query", "/v1/query/stream"])
async def test_odd_filter_and_top_k_values_are_a_422_that_names_the_field(
    service, odd, named, route
):
    client = await service()
    body = {"question": "where does cluster state live", "generate": False, **odd}
    response = await client.post(route, json=body, headers=auth("key-acme"))
    assert response.status_code == 422, response.text
    assert named in response.text
    assert "pydantic" not in response.text and "errors.pydantic.dev" not in response.text


async def test_a_validation_error_echoes_no_more_than_a_short_prefix_of_the_input(service):
    client = await service()
    body = {"question": "x" * 5000, "generate": False}
    response = await client.post("/v1/query", json=body, headers=auth("key-acme"))
    assert response.status_code == 422
    assert "question" in response.text and len(response.text) < 1000


async def test_the_stream_ends_with_an_error_event_whatever_fails(service):
    class Exploding(ScriptedChat):
        async def stream(self, messages, *, max_tokens, temperature=0.0):
            yield "Etcd"
            raise RuntimeError("something nobody expected")

    client = await service(llm=Exploding())
    body = {"question": "where does cluster state live"}
    response = await client.post("/v1/query/stream", json=body, headers=auth("key-acme"))
    events = sse(response.content)
    assert events[-1][0] == "error", events
    assert "nobody expected" not in events[-1][1]["message"]  # said in the log, not to tenants


async def test_odd_values_through_the_openai_route_are_a_422_too(service):
    client = await service()
    body = {
        "model": "ragbus",
        "messages": [{"role": "user", "content": "where does cluster state live"}],
        "filters": {"kind": 1.5},
        "top_k": 2**64,
    }
    response = await client.post("/v1/chat/completions", json=body, headers=auth("key-acme"))
    assert response.status_code == 422
    assert "filters" in response.text and "top_k" in response.text


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "what is etcd?"}] * 300,
        [{"role": "user", "content": "x" * 40_000}],
        [{"role": "user", "content": [{"type": "text", "text": "x" * 40_000}]}],
    ],
    ids=["too-many-messages", "too-long-a-message", "too-long-in-parts"],
)
async def test_a_conversation_sent_whole_is_bounded(service, messages):
    client = await service()
    body = {"model": "ragbus", "messages": messages}
    response = await client.post("/v1/chat/completions", json=body, headers=auth("key-acme"))
    assert response.status_code == 422, response.text[:200]
    assert len(response.text) < 2000
