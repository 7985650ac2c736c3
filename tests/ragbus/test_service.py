"""Every route of every service, as the service's own `create_app` builds it, refuses a missing
or wrong API key once keys are configured; only `/healthz` and `/metrics` answer without one.

The apps are built against the session's real broker but never started: requests go through
the ASGI app in-process and no consumer joins a stage's group.
"""

import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import Route

from ragbus.adapters.embedding import create_backend
from ragbus.adapters.stores import open_store
from services.chunker import main as chunker
from services.chunker.settings import ChunkerSettings
from services.embedder import main as embedder
from services.embedder.settings import EmbedderSettings
from services.indexer import main as indexer
from services.indexer.settings import IndexerSettings
from services.ingest import main as ingest
from services.ingest.settings import IngestSettings
from services.query import main as query
from services.query.settings import QuerySettings
from services.status import main as status
from services.status.settings import StatusSettings

pytestmark = pytest.mark.integration

KEYS = "key-acme:acme,key-beta:beta"
OPEN = {"/healthz", "/metrics"}
DOCS = {("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/redoc")}
# The routes DESIGN.md names, at least: a check that the enumeration below sees them.
KNOWN_ROUTES = {
    "ingest": {("POST", "/v1/documents"), ("DELETE", "/v1/documents/{document_id}")},
    "chunker": set(),
    "embedder": set(),
    "indexer": {("GET", "/v1/index")},
    "query": {
        ("POST", "/v1/query"),
        ("POST", "/v1/query/stream"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
    },
    "status": {
        ("GET", "/v1/documents"),
        ("GET", "/v1/documents/stream"),
        ("GET", "/v1/documents/{document_id}"),
    },
}


@pytest.fixture(scope="module")
async def apps(kafka_broker, tmp_path_factory) -> AsyncIterator[dict[str, FastAPI]]:
    """The six services' apps, with API keys, sharing one embedding model and one store."""
    common = {
        "kafka_bootstrap": kafka_broker,
        "data_dir": tmp_path_factory.mktemp("services"),
        "api_keys": KEYS,
    }
    backend = create_backend(None, threads=1, batch_size=1)
    store = open_store(IndexerSettings(**common))
    built = {
        "ingest": ingest.create_app(IngestSettings(**common)),
        "chunker": chunker.create_app(ChunkerSettings(**common)),
        "embedder": embedder.create_app(
            EmbedderSettings(**common), embedder.EmbedderAdapters(embedder=backend)
        ),
        "indexer": indexer.create_app(IndexerSettings(**common), indexer.IndexerAdapters(store)),
        "query": query.create_app(
            QuerySettings(**common), query.QueryAdapters(store=store, embedder=backend)
        ),
        "status": status.create_app(StatusSettings(**common)),
    }
    yield built
    await store.close()
    backend.close()


def routes_of(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, route path) of every route but the open ones."""
    for route in iter_route_contexts(app.routes):
        kind = route.original_route
        assert isinstance(kind, Route), f"{kind!r}: teach this test about this kind of route"
        if route.path not in OPEN:
            for method in sorted(route.methods or ()):
                yield method, str(route.path)


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service")


@pytest.mark.parametrize("service", KNOWN_ROUTES)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer key-gamma"}, {"Authorization": "Basic a2V5LWFjbWU6"}],
    ids=["missing", "wrong", "not-bearer"],
)
async def test_every_route_but_health_and_metrics_refuses_a_missing_or_wrong_key(
    apps, service, headers
):
    app = apps[service]
    routes = set(routes_of(app))
    assert KNOWN_ROUTES[service] | DOCS <= routes
    async with client(app) as http:
        for method, path in sorted(routes | {("GET", "/no/such/route")}):
            # Path parameters get a dummy value; the gate answers before any body is read.
            response = await http.request(method, re.sub(r"\{[^}]+\}", "x", path), headers=headers)
            assert response.status_code == 401, f"{service}: {method} {path} answered {response}"
            assert response.headers["WWW-Authenticate"] == "Bearer"
            if method != "HEAD":
                assert "API key" in response.json()["detail"]


@pytest.mark.parametrize("service", KNOWN_ROUTES)
async def test_a_valid_key_opens_the_docs(apps, service):
    async with client(apps[service]) as http:
        response = await http.get("/openapi.json", headers={"Authorization": "Bearer key-beta"})
    assert response.status_code == 200
    assert response.json()["info"]["title"] == f"ragbus {service}"


@pytest.mark.parametrize("service", KNOWN_ROUTES)
async def test_health_and_metrics_answer_without_a_key(apps, service):
    app = apps[service]
    # Connecting the broker (producer and admin client) lets the health check reach it; no
    # subscriber starts.
    async with app.state.broker, client(app) as http:
        health = await http.get("/healthz")
        metrics = await http.get("/metrics")
    assert health.status_code == 200, health.text
    assert health.json() == {"service": service, "status": "ok", "broker": True}
    assert metrics.status_code == 200
    assert "ragbus_http_request_seconds" in metrics.text
