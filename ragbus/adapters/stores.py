"""Which vector store a service opens: a Qdrant server (or cluster) at `QDRANT_URL` through
qdrant-client, else Qdrant's engine embedded under the data directory."""

from ragbus.adapters.edge_store import EdgeStore
from ragbus.adapters.store import QdrantStore, StoreRunner
from ragbus.ports import VectorStore
from ragbus.settings import StoreSettings


def open_store(settings: StoreSettings) -> StoreRunner:
    """The store the settings name, behind its runner; whoever opens it closes it. The embedded
    engine admits one opener per directory: services in one process must share one runner."""
    store: VectorStore
    if settings.qdrant_url:
        store = QdrantStore.connect(
            settings.qdrant_url, settings.index_path, settings.collection_alias
        )
    else:
        store = EdgeStore(settings.index_path, settings.collection_alias)
    return StoreRunner(store)
