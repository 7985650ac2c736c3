"""The HTTP shell every service shares: health, metrics, and a lifespan that runs the broker."""

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker

from ragbus import metrics

Hook = Callable[[], Awaitable[None]]


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
