"""Composition root of the status service."""

from dataclasses import dataclass

from fastapi import FastAPI

from contracts.topics import DOCUMENT_STATUS
from ragbus.bus import Bus, create_broker
from ragbus.service import create_service_app
from ragbus.status_feed import follow

from .board import StatusBoard
from .routes import router
from .settings import StatusSettings, get_settings

__all__ = ["StatusAdapters", "create_app", "get_settings"]


@dataclass(frozen=True)
class StatusAdapters:
    """The status service's ports: none beyond the broker, which its settings name. (Kept so
    that every service's `create_app` takes the same two arguments.)"""


def create_app(settings: StatusSettings, adapters: StatusAdapters | None = None) -> FastAPI:
    broker = create_broker(settings, "status")
    board = StatusBoard(settings.deleted_retention)
    follow(broker, board, "status", Bus(broker, "status", consumes=[DOCUMENT_STATUS]))
    return create_service_app(
        "status",
        settings,
        broker=broker,
        routers=[router],
        description="Every document's progress, over REST and SSE.",
        state={"board": board},
    )
