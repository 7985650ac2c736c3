"""Fixtures of the query service's HTTP tests: the real embedding model, and started query
services over a test module's `data_dir` (embedded Qdrant it filled) with its `api_keys`."""

import httpx
import pytest

from ragbus.adapters.embedding import create_backend
from ragbus.adapters.store import QdrantStore, StoreRunner
from services.query.main import QueryAdapters, create_app
from services.query.settings import QuerySettings


@pytest.fixture(scope="module")
def embedder():
    backend = create_backend(None, threads=1, batch_size=4)
    yield backend
    backend.close()


class Borrowed:
    """The module's embedder, lent to one app: the app's shutdown must not close it."""

    def __init__(self, backend) -> None:
        self._backend = backend

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def close(self) -> None:
        return None


@pytest.fixture
async def service(kafka_broker, data_dir, api_keys, embedder):
    """`start(llm=..., reranker=..., **settings)` → an HTTP client on a started query service
    (broker, replay) over the module's `data_dir`, with its `api_keys` ({key: tenant})."""
    started = []
    # Embedded storage admits one opener: every app of a test (replicas too) shares it.
    runner = StoreRunner(QdrantStore.connect(None, data_dir / "qdrant", "ragbus"))

    async def start(llm=None, reranker=None, **overrides):
        settings = QuerySettings(
            kafka_bootstrap=kafka_broker,
            data_dir=data_dir,
            api_keys=",".join(f"{key}:{tenant}" for key, tenant in api_keys.items()),
            **overrides,
        )
        app = create_app(
            settings,
            QueryAdapters(store=runner, embedder=Borrowed(embedder), llm=llm, reranker=reranker),
        )
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://query")
        started.append((lifespan, client))
        return client

    yield start
    for lifespan, client in started:
        await client.aclose()
        await lifespan.__aexit__(None, None, None)
    await runner.close()
