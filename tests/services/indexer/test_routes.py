"""`GET /v1/index` of the indexer's own app, over embedded Qdrant it opened itself."""

from datetime import UTC, datetime

import httpx
import numpy as np
import pytest

from contracts.events import EmbeddedChunk, VectorsReady
from contracts.ids import chunk_id, document_id
from contracts.vectors import pack
from services.indexer.main import create_app
from services.indexer.settings import IndexerSettings
from services.indexer.transform import to_points

pytestmark = pytest.mark.integration

KEYS = "key-acme:acme,key-beta:beta,key-omega:omega"
DIMENSIONS = 4


def vectors_ready(tenant: str, source: str, chunks: int) -> VectorsReady:
    doc = document_id(tenant, source)
    return VectorsReady(
        document_id=doc,
        tenant_id=tenant,
        version="v1",
        source=source,
        total_chunks=chunks,
        batch=0,
        uploaded_at=datetime.now(UTC),
        model="m",
        dimensions=DIMENSIONS,
        chunks=[
            EmbeddedChunk(
                chunk_id=chunk_id(doc, "v1", n),
                ordinal=n,
                text=f"{tenant} {source} {n}",
                token_count=3,
                vector=pack(np.full(DIMENSIONS, n + 1, np.float32)),
            )
            for n in range(chunks)
        ],
    )


@pytest.fixture
async def indexer(kafka_broker, tmp_path):
    """An HTTP client on the indexer's app (not consuming) holding acme's two documents (four
    points) and beta's one (two points)."""
    settings = IndexerSettings(kafka_bootstrap=kafka_broker, data_dir=tmp_path, api_keys=KEYS)
    app = create_app(settings=settings)
    runner = app.state.store
    store = runner.store
    await runner.run(lambda: store.ensure_collection(DIMENSIONS))
    for event in (
        vectors_ready("acme", "a.md", 3),
        vectors_ready("acme", "b.md", 1),
        vectors_ready("beta", "a.md", 2),
    ):
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
