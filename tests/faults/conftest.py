"""Fixtures of the fault suite: a cluster of its own per test, the corpus and the report."""

from collections.abc import Callable, Iterable, Iterator

import pytest

from ragbus_ops.eval.datasets import Document

from .audit import FaultReport
from .cluster import Cluster
from .corpus import SQUAD_DEV, squad_paragraphs


@pytest.fixture(scope="session")
def squad_documents() -> list[Document]:
    """The SQuAD v1.1 dev paragraphs (see SOURCE.md beside the file), 2,067 short documents."""
    if not SQUAD_DEV.is_file():
        pytest.skip(f"the fault suite's corpus, SQuAD v1.1 dev, is not at {SQUAD_DEV}")
    return squad_paragraphs(SQUAD_DEV)


@pytest.fixture(scope="session")
def fault_report() -> FaultReport:
    """reports/faults.json, started afresh by each session and rewritten as tests add to it."""
    return FaultReport()


@pytest.fixture
def make_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Cluster]]:
    """`make_cluster(tenants)`: a started broker of the test's own (with every topic), no
    service process yet; everything it ran is stopped after the test."""
    clusters: list[Cluster] = []

    def make(tenants: Iterable[str]) -> Cluster:
        cluster = Cluster(tmp_path_factory.mktemp("faults"), tenants)
        clusters.append(cluster)
        cluster.start_broker()
        return cluster

    yield make
    for cluster in clusters:
        cluster.close()
