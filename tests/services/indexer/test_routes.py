"""`GET /v1/index` of the indexer's own app, over embedded Qdrant it opened itself."""

import httpx
import pytest

from contracts.ids import document_id
from services.indexer.main import create_app
from services.indexer.settings import IndexerSettings
from services.indexer.transform import to_points
from tests.events import vectors_ready

pytestmark = pytest.mark.integration

KEYS = "key-acme:acme,key-beta:beta,key-omega:omega"
DIMENSIONS = 4


@pytest.fixture
async def indexer(kafka_broker, tmp_path):
    """An HTTP client on the indexer's app (not consuming) holding acme's two documents (four
    points) and beta's one (two points)."""
    settings = IndexerSettings(kafka_bootstrap=kafka_broker, data_dir=tmp_path, api_keys=KEYS)
    app = create_app(settings=settings)
    runner = app.state.store
    store = runner.store
    await runner.run(lambda: store.ensure_collection(DIMENSIONS))
    for tenant, source, chunks in (("acme", "a.md", 3), ("acme", "b.md", 1), ("beta", "a.md", 2)):
        event = vectors_ready(
            range(chunks),
            total=chunks,
            document_id=document_id(tenant, source),
            tenant_id=tenant,
            source=source,
            dimensions=DIMENSIONS,
        )
        await runner.run(lambda event=event: store.upsert(to_points(event)))
        await runner.run(lambda event=event: store.promote(event.document_id, event.version))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://indexer"
    ) as client:
        yield client
    await runner.close()


@pytest.mark.parametrize(
    ("key", "points", "documents"),
    [("key-acme", 4, 2), ("key-beta", 2, 1), ("key-omega", 0, 0)],
)
async def test_the_index_counts_only_the_callers_points(indexer, key, points, documents):
    response = await indexer.get("/v1/index", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    assert response.json() == {
        "alias": "ragbus",
        "collection": "ragbus_g1",
        "generation": 1,
        "points": points,
        "documents": documents,
    }


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer key-gamma"}])
async def test_the_index_needs_a_key(indexer, headers):
    response = await indexer.get("/v1/index", headers=headers)
    assert response.status_code == 401
