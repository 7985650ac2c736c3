"""Every service by name: what `ragbus serve`, the supervisor and the AsyncAPI generator start,
without import strings."""

from collections.abc import Sequence
from types import ModuleType

from ragbus.runner import Served, run
from ragbus.settings import CommonSettings
from services.chunker import main as chunker
from services.embedder import main as embedder
from services.indexer import main as indexer
from services.ingest import main as ingest
from services.query import main as query
from services.status import main as status

SERVICES: dict[str, ModuleType] = {
    "ingest": ingest,
    "chunker": chunker,
    "embedder": embedder,
    "indexer": indexer,
    "query": query,
    "status": status,
}


def settings_of(name: str) -> CommonSettings:
    """The service's settings, as its environment gives them."""
    settings: CommonSettings = SERVICES[name].get_settings()
    return settings


def port_of(name: str) -> int:
    port: int = getattr(settings_of(name), "port")  # noqa: B009 - every service has a port
    return port


def main(names: Sequence[str]) -> None:
    """Serve the named services in this process; services in one process share one store."""
    unknown = [name for name in names if name not in SERVICES]
    if unknown:
        raise SystemExit(f"unknown service {unknown[0]!r}; choose from {', '.join(SERVICES)}")
    shared: dict[str, object] = {}
    apps = [
        Served(SERVICES[name].create_app(shared), settings_of(name).host, port_of(name))
        for name in names
    ]
    run(apps, settings_of(names[0]).log_level)
