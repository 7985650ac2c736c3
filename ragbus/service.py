"""The HTTP shell every service shares: health, metrics, API keys, rate limits, a lifespan
that runs the broker (and exports the stage's consumer lag), and what the routes depend on."""

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragbus import metrics
from ragbus.auth import bearer, tenant_for
from ragbus.lag import lag_hooks
from ragbus.ratelimit import RateLimiter, retry_after
from ragbus.settings import HttpSettings, ServiceSettings

Hook = Callable[[], Awaitable[None]]
OPEN_PATHS = frozenset({"/healthz", "/metrics"})
"""The only paths served without an API key when keys are configured."""


class Observed:
    """ASGI middleware: every request's duration on `ragbus_http_seconds`, by route and status.
    Plain ASGI, not `@app.middleware("http")`: Starlette's `BaseHTTPMiddleware` runs each request
    through an extra task and stream."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            metrics.HTTP_SECONDS.labels(self.service, scope["method"], path, status).observe(
                time.perf_counter() - started
            )


class BodyLimit:
    """ASGI middleware: a request body counted as it streams, chunked or not, and refused with
    a 413 that names the limit as soon as it passes it (a declared length at once), so no body
    larger than the limit is ever held. Starlette's own limiter answers a bare text/plain
    "Content Too Large" in place of a route's own, more telling 413."""

    def __init__(self, app: ASGIApp, limit: int, setting: str) -> None:
        self.app = app
        self.limit = limit
        self.setting = setting

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await JSONResponse({"detail": self._refusal(int(declared))}, 413)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # An HTTPException: FastAPI and the routes pass it on, and it is answered.
                    raise HTTPException(413, self._refusal(received))
            return message

        await self.app(scope, counted, send)

    def _refusal(self, size: int) -> str:
        return f"request body of {size}+ bytes is over the {self.limit}-byte limit ({self.setting})"


class KeyGate:
    """ASGI middleware: with API keys configured, a request to any path but `OPEN_PATHS` needs
    a valid key, checked before routing, so no handler ever runs without one: unknown paths and
    the OpenAPI pages (`/docs`, `/redoc`, `/openapi.json`) answer 401 too. Each key then draws
    on its own token bucket (429 with `Retry-After` when empty). Without keys (single tenant,
    loopback only) nothing is checked or limited.

    Reads `app.state.settings` (the service's `HttpSettings`), which `create_service_app` sets.
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
            tenant_for(settings.tenant_keys, credentials)
        except HTTPException as exc:
            return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)
        if self._limiter is None:
            self._limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
        assert credentials is not None  # a tenant was found for it
        wait_s = self._limiter.admit(credentials.credentials)
        if not wait_s:
            return None
        metrics.RATE_LIMITED.labels(self.service).inc()
        after = retry_after(wait_s)
        return JSONResponse(
            {"detail": f"rate limit of {self._limiter.describe()} exceeded; retry in {after} s"},
            429,
            headers={"Retry-After": after},
        )


def create_service_app(
    title: str,
    settings: ServiceSettings,
    *,
    broker: KafkaBroker | None = None,
    lag: tuple[str, str] | None = None,
    routers: Sequence[APIRouter] = (),
    startup: Sequence[Hook] = (),
    started: Sequence[Hook] = (),
    shutdown: Sequence[Hook] = (),
    description: str = "",
    state: Mapping[str, object] | None = None,
    max_body_bytes: tuple[int, str] | None = None,
) -> FastAPI:
    """A FastAPI app with `/healthz` and `/metrics`; `startup` hooks run before the broker
    starts consuming (load models, open stores), `started` hooks once it consumes and before
    the app serves (catch up on a topic), and `shutdown` hooks after the broker stopped.

    `settings`, `broker` and the entries of `state` are set on `app.state`, where `KeyGate`
    and the routes' dependencies (`app_state`) read them. With `lag` (a consumer group and its
    topic), the group's lag is exported on `/metrics` from `started` until shutdown. Request
    bodies are counted as they stream and refused (413) past `max_body_bytes` (a limit and the
    setting that gives it; default the settings' `max_body_bytes`)."""
    if lag is not None:
        group, topic = lag
        watch_lag, stop_watching = lag_hooks(
            settings.kafka_options(), group, topic, settings.lag_interval_s
        )
        started = [*started, watch_lag]
        shutdown = [*shutdown, stop_watching]

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
    limit, setting = max_body_bytes or (settings.max_body_bytes, "RAGBUS_MAX_BODY_BYTES")
    app.add_middleware(BodyLimit, limit=limit, setting=setting)
    app.add_exception_handler(RequestValidationError, invalid_request)
    # Added before `Observed`, so it runs inside it: rejected requests are measured too.
    app.add_middleware(KeyGate, service=title)
    app.add_middleware(Observed, service=title)

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
    app.state.settings = settings
    app.state.broker = broker
    for name, value in (state or {}).items():
        setattr(app.state, name, value)
    return app


# What a validation error repeats of the input it refused: enough to recognise it.
ECHOED_CHARS = 80


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """422 naming each refused field and why, with a short prefix of what was sent: never the
    whole input (a 5 MB question echoed back, or values the JSON encoder cannot write)."""
    assert isinstance(exc, RequestValidationError)
    detail = [
        {
            "loc": list(error.get("loc", ())),
            "msg": error.get("msg", ""),
            "type": error.get("type", ""),
            "input": _prefix(error.get("input")),
        }
        for error in exc.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def _prefix(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= ECHOED_CHARS else text[:ECHOED_CHARS] + "…"


def app_state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A FastAPI dependency that gives `app.state.<name>` (`create_service_app`'s `state`):
    `Board = Annotated[StatusBoard, Depends(app_state("board"))]`. Async, as every dependency
    here: FastAPI runs a plain function in a worker thread, a hop per dependency per request
    (12 of them per question measured on the query route)."""

    async def get(request: Request) -> Any:
        return getattr(request.app.state, name)

    return get
