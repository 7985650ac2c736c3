"""The HTTP shell every service shares: health, metrics, API keys, rate limits, and a lifespan
that runs the broker."""

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from ragbus import metrics
from ragbus.auth import bearer, tenant_for
from ragbus.ratelimit import RateLimiter, retry_after
from ragbus.settings import HttpSettings

Hook = Callable[[], Awaitable[None]]
OPEN_PATHS = frozenset({"/healthz", "/metrics"})
"""The only paths served without an API key when keys are configured."""


class KeyGate:
    """ASGI middleware: with API keys configured, a request to any path but `OPEN_PATHS` needs
    a valid key, checked before routing, so no handler ever runs without one: unknown paths and
    the OpenAPI pages (`/docs`, `/redoc`, `/openapi.json`) answer 401 too. Each key then draws
    on its own token bucket (429 with `Retry-After` when empty). Without keys (single tenant,
    loopback only) nothing is checked or limited.

    Reads `app.state.settings` (the service's `HttpSettings`), which each service's `create_app`
    sets.
    """

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
        self._limiter: RateLimiter | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"] not in OPEN_PATHS:
            settings: HttpSettings = scope["app"].state.settings
            if settings.tenant_keys:
                rejection = await self._reject(HTTPConnection(scope), settings)
                if rejection is not None:
                    await rejection(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _reject(self, connection: HTTPConnection, settings: HttpSettings) -> Response | None:
        credentials = await bearer(connection)
        try:
            tenant = tenant_for(settings.tenant_keys, credentials)
        except HTTPException as exc:
            return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)
        if self._limiter is None:
            self._limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
        assert credentials is not None  # a tenant was found for it
        wait_s = self._limiter.admit(credentials.credentials)
        if not wait_s:
            return None
        metrics.RATE_LIMITED.labels(self.service, tenant).inc()
        after = retry_after(wait_s)
        return JSONResponse(
            {"detail": f"rate limit of {self._limiter.describe()} exceeded; retry in {after} s"},
            429,
            headers={"Retry-After": after},
        )


def create_service_app(
    title: str,
    *,
    broker: KafkaBroker | None = None,
    routers: Sequence[APIRouter] = (),
    startup: Sequence[Hook] = (),
    started: Sequence[Hook] = (),
    shutdown: Sequence[Hook] = (),
    description: str = "",
) -> FastAPI:
    """A FastAPI app with `/healthz` and `/metrics`; `startup` hooks run before the broker
    starts consuming (load models, open stores), `started` hooks once it consumes and before
    the app serves (catch up on a topic), and `shutdown` hooks after the broker stopped."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for hook in startup:
                await hook()
            for hook in shutdown:
                stack.push_async_callback(hook)
            if broker is not None:
                await broker.start()
                stack.push_async_callback(broker.stop)
            for hook in started:
                await hook()
            yield

    app = FastAPI(
        title=f"ragbus {title}",
        description=description,
        lifespan=lifespan,
    )
    # Added before `observe`, so it runs inside it: rejected requests are measured too.
    app.add_middleware(KeyGate, service=title)

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.HTTP_SECONDS.labels(title, request.method, path, response.status_code).observe(
            time.perf_counter() - started
        )
        return response

    @app.get("/healthz", tags=["health"])
    async def healthz() -> JSONResponse:
        """Alive and connected to the broker."""
        body: dict[str, Any] = {"service": title, "status": "ok"}
        if broker is not None:
            body["broker"] = await broker.ping(timeout=2.0)
            if not body["broker"]:
                body["status"] = "degraded"
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

    app.include_router(metrics.router)
    for router in routers:
        app.include_router(router)
    return app
