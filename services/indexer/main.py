"""Composition root of the indexer service."""

from dataclasses import dataclass

from fastapi import FastAPI

from contracts.events import GenerationPlan, IndexPromoted
from contracts.topics import INDEX_GENERATIONS, INDEX_PROMOTED, VECTORS_READY
from ragbus.adapters.store import StoreRunner
from ragbus.adapters.stores import open_store
from ragbus.bus import Bus, create_broker
from ragbus.service import Hook, create_service_app

from .generations import Generations
from .handlers import TRANSIENT
from .routes import router
from .settings import IndexerSettings, get_settings
from .subscriber import GROUP, register

__all__ = ["IndexerAdapters", "create_app", "get_settings"]


@dataclass(frozen=True)
class IndexerAdapters:
    """The indexer's ports. A `store` left None is opened from the settings and closed at
    shutdown; one passed in stays the caller's to close. With embedded storage, one process's
    indexer and query service must share one `store`."""

    store: StoreRunner | None = None


def create_app(settings: IndexerSettings, adapters: IndexerAdapters | None = None) -> FastAPI:
    given = adapters or IndexerAdapters()
    owned: list[Hook] = []
    runner = given.store
    if runner is None:
        runner = open_store(settings)
        owned.append(runner.close)
    broker = create_broker(settings, "indexer")
    bus = Bus(
        broker,
        "indexer",
        {INDEX_PROMOTED: IndexPromoted, INDEX_GENERATIONS: GenerationPlan},
        [VECTORS_READY],
        transient=TRANSIENT,
    )
    register(broker, bus, settings, runner)
    generations = Generations(runner, bus, settings.kafka_options(), keep=settings.keep_generations)
    return create_service_app(
        "indexer",
        settings,
        broker=broker,
        lag=(GROUP, VECTORS_READY),
        routers=[router],
        # The chunkers learn the generations from the topic, whatever happened while it was down.
        started=[generations.announce],
        shutdown=owned,
        description="Index vectors into Qdrant and promote documents; rebuild, swap and roll "
        "back index generations.",
        state={"store": runner, "generations": generations},
    )
