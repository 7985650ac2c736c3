from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, HTTPException
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials

from ragbus.auth import Tenant, tenant_for
from ragbus.service import create_service_app
from ragbus.settings import DEFAULT_TENANT, ServiceSettings
from ragbus.sse import event_stream, frame

pytestmark = pytest.mark.unit

KEYS = {"key-acme": "acme", "key-acme-2": "acme", "key-beta": "beta"}


def credentials(key: str) -> HTTPAuthorizationCredentials:
    return HTTPAuthorizationCredentials(scheme="Bearer", credentials=key)


@pytest.mark.parametrize(
    ("key", "tenant"), [("key-acme", "acme"), ("key-acme-2", "acme"), ("key-beta", "beta")]
)
def test_the_tenant_comes_from_the_key(key, tenant):
    assert tenant_for(KEYS, credentials(key)) == tenant


@pytest.mark.parametrize(
    ("offered", "message"),
    [
        (None, "missing API key"),
        (credentials("key-gamma"), "invalid API key"),
        (credentials("key-acm"), "invalid API key"),
        (credentials("key-acme-2x"), "invalid API key"),
        (credentials("KEY-ACME"), "invalid API key"),
        (credentials("acme"), "invalid API key"),
    ],
)
def test_a_missing_or_wrong_key_is_401(offered, message):
    with pytest.raises(HTTPException) as caught:
        tenant_for(KEYS, offered)
    assert caught.value.status_code == 401
    assert message in caught.value.detail
    assert caught.value.headers == {"WWW-Authenticate": "Bearer"}


@pytest.mark.parametrize("offered", [None, credentials("anything")])
def test_without_keys_everyone_is_the_default_tenant(offered):
    assert tenant_for({}, offered) == DEFAULT_TENANT


class Probe:
    """The shared service shell with a route that takes the tenant, one that does not, and an
    SSE route; `calls` counts the handler runs."""

    def __init__(self, **settings: Any) -> None:
        self.calls = 0
        router = APIRouter(prefix="/v1")

        @router.get("/whoami")
        async def whoami(tenant: Tenant) -> dict[str, str]:
            self.calls += 1
            return {"tenant": tenant}

        @router.post("/open")
        async def no_tenant_parameter() -> dict[str, str]:
            self.calls += 1
            return {"reached": "yes"}

        @router.get("/stream")
        async def stream(tenant: Tenant) -> StreamingResponse:
            self.calls += 1

            async def frames() -> AsyncIterator[bytes]:
                yield frame("hello", {"tenant": tenant})

            return event_stream(frames())

        self.app = create_service_app("probe", ServiceSettings(**settings), routers=[router])

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://p")


def probe_app(**settings: Any) -> httpx.AsyncClient:
    return Probe(**settings).client()


def keyed() -> Probe:
    return Probe(api_keys=",".join(f"{key}:{tenant}" for key, tenant in KEYS.items()))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("nope"),
        {"Authorization": "Basic a2V5LWFjbWU6"},
        {"Authorization": "key-acme"},
        {"Authorization": "Bearer"},
        {"X-Api-Key": "key-acme"},
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/whoami"),
        ("POST", "/v1/open"),
        ("GET", "/v1/stream"),
        ("GET", "/docs"),
        ("GET", "/redoc"),
        ("GET", "/openapi.json"),
        ("GET", "/no/such/path"),
        ("DELETE", "/v1/whoami"),
    ],
)
async def test_no_handler_runs_without_a_valid_key(headers, method, path):
    probe = keyed()
    async with probe.client() as client:
        response = await client.request(method, path, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["detail"] in (
        "missing API key: send Authorization: Bearer <key>",
        "invalid API key",
    )
    assert probe.calls == 0


async def test_a_valid_key_reaches_every_kind_of_route():
    probe = keyed()
    async with probe.client() as client:
        whoami = await client.get("/v1/whoami", headers={"Authorization": "bearer key-beta"})
        assert whoami.json() == {"tenant": "beta"}
        assert (await client.post("/v1/open", headers=bearer("key-acme"))).status_code == 200
        stream = await client.get("/v1/stream", headers=bearer("key-acme-2"))
        assert stream.text.startswith("event: hello") and '"tenant":"acme"' in stream.text
        assert (await client.get("/no/such", headers=bearer("key-acme"))).status_code == 404
        schema = (await client.get("/openapi.json", headers=bearer("key-acme"))).json()
    assert probe.calls == 3
    assert schema["paths"]["/v1/whoami"]["get"]["security"] == [{"HTTPBearer": []}]


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
async def test_health_and_metrics_need_no_key(path):
    async with keyed().client() as client:
        assert (await client.get(path)).status_code == 200


async def test_without_keys_nothing_is_checked():
    async with probe_app() as client:
        assert (await client.get("/v1/whoami")).json() == {"tenant": DEFAULT_TENANT}
        assert (await client.get("/v1/whoami", headers=bearer("any"))).status_code == 200
        assert (await client.get("/docs")).status_code == 200
