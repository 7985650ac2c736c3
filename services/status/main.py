"""Composition root of the status service."""

from fastapi import FastAPI

from contracts.topics import DOCUMENT_STATUS
from ragbus.bus import Bus, create_broker
from ragbus.service import create_service_app
from ragbus.status_feed import follow

from .board import StatusBoard
from .routes import router
from .settings import StatusSettings, get_settings

__all__ = ["create_app", "get_settings"]


def create_app(
    shared: dict[str, object] | None = None, settings: StatusSettings | None = None
) -> FastAPI:
    settings = settings or get_settings()
    broker = create_broker(settings, "status")
    board = StatusBoard()
    follow(broker, board, "status", Bus(broker, "status", consumes=[DOCUMENT_STATUS]))
    app = create_service_app(
        "status",
        broker=broker,
        routers=[router],
        description="Every document's progress, over REST and SSE.",
    )
    app.state.settings = settings
    app.state.broker = broker
    app.state.board = board
    return app
