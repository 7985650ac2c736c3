"""Tenant isolation under load: thousands of randomized questions through the query service's
HTTP routes, each with a random tenant's key, never cite another tenant's chunk.

Every tenant holds the same shared documents (same names, same texts) besides its own private
ones, and many questions are another tenant's private text word for word, so a leak through
any retrieval mode, filter, fusion or the answer cache would show. The passages are written
into embedded Qdrant the indexer's way (its transform, upsert, promote), with the real model.
"""

import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.events import EmbeddedChunk, VectorsReady
from contracts.ids import chunk_id, document_id, sha256_of, version_of
from contracts.vectors import pack
from ragbus.adapters.store import QdrantStore
from ragbus_ops.client import headers, sse_events
from services.indexer.transform import to_points

pytestmark = pytest.mark.integration

QUERIES = 10_000
REPORT = Path(__file__).resolve().parents[3] / "reports" / "tenants.json"
TENANTS = ("acme", "beta", "gamma", "delta")
KEYS = {
    "key-acme": "acme",
    "key-acme-ops": "acme",
    "key-beta": "beta",
    "key-gamma": "gamma",
    "key-delta": "delta",
    "key-omega": "omega",  # a tenant with no documents: any citation it gets is a leak
}
SHARED = [
    ("Etcd is the consistent key-value store of the cluster.", "It keeps all cluster state."),
    ("The scheduler assigns new pods to nodes.", "It weighs resources and affinity rules."),
    ("The kubelet runs on every node.", "It starts the containers of each pod."),
    ("A Deployment keeps a set of identical pods running.", "It rolls out new versions."),
    ("A Service gives pods one stable address.", "Traffic is balanced across its endpoints."),
    ("An Ingress routes outside HTTP traffic.", "Rules match hosts and paths to services."),
    ("A ConfigMap holds configuration as key-value pairs.", "Pods read it as files or env."),
    ("A Secret stores passwords and tokens.", "Access to it is limited by RBAC."),
    ("Namespaces divide one cluster between teams.", "Quotas cap what each may use."),
    ("The API server is the front door of the control plane.", "Every change passes it."),
    ("A StatefulSet gives pods stable names and storage.", "Databases often run in one."),
    ("A DaemonSet runs one pod on each node.", "Log shippers are a common use."),
    ("Horizontal autoscaling adds pods under load.", "It follows CPU or custom metrics."),
    ("A PersistentVolumeClaim asks for storage.", "The cluster binds it to a volume."),
    ("Liveness probes restart stuck containers.", "Readiness probes gate traffic."),
    ("Network policies limit which pods may talk.", "By default all traffic is allowed."),
    ("Kafka keeps an ordered log per partition.", "Consumers in a group share partitions."),
    ("Qdrant stores vectors with a payload.", "Filters on the payload narrow a search."),
    ("Backups should be tested by restoring them.", "An untested backup is a hope."),
    ("Rolling upgrades replace pods a few at a time.", "The old version serves meanwhile."),
]
CODENAMES = ("falcon", "orchid", "granite", "nimbus", "quartz", "saffron", "tundra", "willow")
REGIONS = ("north", "south", "east", "west")


@dataclass
class Corpus:
    """Indexed storage under `path`, who owns what (each tenant's chunk and document ids), and
    the texts questions are made of."""

    path: Path
    chunks: dict[str, set[str]] = field(default_factory=dict)
    documents: dict[str, set[str]] = field(default_factory=dict)
    shared_texts: list[str] = field(default_factory=list)
    private_texts: list[str] = field(default_factory=list)
    words: list[str] = field(default_factory=list)


def private_documents(tenant: str, rng: random.Random) -> list[tuple[str, tuple[str, str]]]:
    """A tenant's own documents: its name, code names and bucket numbers in every chunk."""
    documents = []
    for n in range(6):
        codename, region = rng.choice(CODENAMES), rng.choice(REGIONS)
        documents.append(
            (
                f"private-{n}.md",
                (
                    f"The {tenant} project {codename} keeps its backups in bucket "
                    f"{tenant}-{rng.randrange(1000)} in the {region} region.",
                    f"Only the {tenant} {codename} team may restore etcd snapshots there.",
                ),
            )
        )
    return documents


def vectors_ready(
    tenant: str, source: str, texts: tuple[str, ...], metadata: dict[str, Any], embedder
) -> VectorsReady:
    doc = document_id(tenant, source)
    version = version_of(sha256_of("\n".join(texts).encode()))
    return VectorsReady(
        document_id=doc,
        tenant_id=tenant,
        version=version,
        source=source,
        metadata=metadata,
        total_chunks=len(texts),
        batch=0,
        uploaded_at=datetime.now(UTC),
        model=embedder.name,
        dimensions=embedder.dimensions,
        chunks=[
            EmbeddedChunk(
                chunk_id=chunk_id(doc, version, ordinal),
                ordinal=ordinal,
                text=text,
                token_count=len(text.split()),
                vector=pack(vector),
            )
            for ordinal, (text, vector) in enumerate(zip(texts, embedder.embed(texts), strict=True))
        ],
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, embedder) -> Corpus:
    """Every tenant's shared and private documents, indexed and promoted as the indexer does."""
    corpus = Corpus(tmp_path_factory.mktemp("tenants"))
    store = QdrantStore.connect(None, corpus.path / "qdrant", "ragbus")
    store.ensure_collection(embedder.dimensions)
    rng = random.Random(7)
    for tenant in TENANTS:
        documents = [
            (f"shared-{n:02d}.md", texts, {"kind": "shared", "team": ("red", "blue")[n % 2]})
            for n, texts in enumerate(SHARED)
        ] + [
            (source, texts, {"kind": "private", "team": rng.choice(("red", "blue"))})
            for source, texts in private_documents(tenant, rng)
        ]
        for source, texts, metadata in documents:
            event = vectors_ready(tenant, source, texts, metadata, embedder)
            store.upsert(to_points(event))
            store.promote(event.document_id, event.version)
            corpus.documents.setdefault(tenant, set()).add(event.document_id)
            corpus.chunks.setdefault(tenant, set()).update(c.chunk_id for c in event.chunks)
            if metadata["kind"] == "private":
                corpus.private_texts.extend(texts)
    store.close()
    corpus.shared_texts = [text for texts in SHARED for text in texts]
    every_text = corpus.shared_texts + corpus.private_texts
    corpus.words = sorted(
        {word.strip(".,").lower() for text in every_text for word in text.split()}
    )
    return corpus


@pytest.fixture(scope="module")
def data_dir(corpus):
    return corpus.path


@pytest.fixture(scope="module")
def api_keys():
    return KEYS


def question(rng: random.Random, corpus: Corpus) -> str:
    """A shared text, another tenant's private text, or a bag of the corpus's words."""
    kind = rng.random()
    if kind < 0.3:
        return rng.choice(corpus.shared_texts)
    if kind < 0.6:
        text = rng.choice(corpus.private_texts)
        return text if rng.random() < 0.5 else " ".join(text.split()[: rng.randint(2, 8)])
    words = rng.sample(corpus.words, rng.randint(1, 8))
    if kind < 0.8:
        words += [rng.choice(TENANTS), rng.choice(CODENAMES)]
    return " ".join(words)


FILTERS = [
    {"kind": "shared"},
    {"kind": "private"},
    {"team": "red"},
    {"kind": "private", "team": "blue"},
    {"kind": "no-such-kind"},
]


def request(rng: random.Random, corpus: Corpus) -> tuple[str, str, dict[str, Any]]:
    """(route, key, JSON body) of one random call: mostly retrieval-only JSON, some SSE, some
    OpenAI chat completions answered from the passages (no language model)."""
    key = rng.choice(list(KEYS))
    options: dict[str, Any] = {
        "mode": rng.choice(("dense", "sparse", "hybrid")),
        "top_k": rng.randint(1, 20),
    }
    if rng.random() < 0.25:
        options["filters"] = rng.choice(FILTERS)
    ask = question(rng, corpus)
    route = rng.random()
    if route < 0.03:
        body = {"model": "ragbus", "messages": [{"role": "user", "content": ask}], **options}
        return "/v1/chat/completions", key, body
    if route < 0.06:
        return "/v1/query/stream", key, {"question": ask, "generate": rng.random() < 0.5, **options}
    return "/v1/query", key, {"question": ask, "generate": False, **options}


async def citations_of(client: httpx.AsyncClient, route: str, key: str, body: dict[str, Any]):
    """Every passage the answer to one call names, wherever the route puts them."""
    response = await client.post(route, json=body, headers=headers(key))
    assert response.status_code == 200, f"{route} {body}: {response.status_code} {response.text}"
    if route == "/v1/query/stream":
        cited = []
        async for event, data in sse_events(response):
            assert event != "error", data
            if event == "retrieval":
                cited += data["passages"]
            elif event == "citation":
                cited.append(data)
            elif event == "done":
                cited += data["citations"]
        return cited
    return response.json()["citations"]


async def test_no_query_ever_cites_another_tenants_chunk(service, corpus, pytestconfig):
    client = await service(rate_limit_per_s=0)
    rng = random.Random(20240404)
    counts: Counter[str] = Counter()
    leaks: list[str] = []
    started = time.perf_counter()
    for _ in range(QUERIES):
        route, key, body = request(rng, corpus)
        tenant = KEYS[key]
        cited = await citations_of(client, route, key, body)
        counts[route] += 1
        counts["answered"] += bool(cited)
        counts["citations"] += len(cited)
        for citation in cited:
            owned = citation["chunk_id"] in corpus.chunks.get(tenant, set())
            if not owned or citation["document_id"] not in corpus.documents.get(tenant, set()):
                leaks.append(f"{tenant} ({key}) got {citation['chunk_id']} for {route} {body}")
    seconds = time.perf_counter() - started
    report = {
        "queries": QUERIES,
        "cross_tenant_results": len(leaks),
        "citations_checked": counts["citations"],
        "queries_with_citations": counts["answered"],
        "by_route": {route: n for route, n in counts.items() if route.startswith("/")},
        "tenants": len(TENANTS) + 1,
        "seconds": round(seconds, 1),
    }
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"\ntenant isolation: {json.dumps(report)}")
    assert leaks == [], f"{len(leaks)} cross-tenant results, first: {leaks[:3]}"
    # Not vacuous: most questions find passages of the asking tenant.
    assert counts["answered"] > QUERIES // 2
    assert counts["citations"] > QUERIES
