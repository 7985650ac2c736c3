"""The `VectorStore` contract, run against every implementation: EdgeStore (Qdrant's engine
embedded, the default), QdrantStore (qdrant-client; its local mode stands in for a server) and the
FakeStore of tests/fakes.py (dense, sparse and fused search, tenants, filters,
and the swap of document versions: written not live, promoted, replaced, deleted); then what
only QdrantStore does (refusing storage an older ragbus wrote, finishing a cut-off promotion)."""

import time
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from qdrant_client import models as qm

from ragbus.adapters.edge_store import EdgeStore
from ragbus.adapters.store import REGISTRY_SUFFIX, QdrantStore
from ragbus.ports import (
    GenerationBusy,
    Hit,
    Point,
    SearchRequest,
    UnknownGeneration,
    VectorStore,
)
from ragbus.sparse import encode_document, encode_query
from tests.fakes import FakeStore

pytestmark = pytest.mark.unit

PASSAGES = {
    # (tenant, text, dense vector, metadata)
    "a1": ("acme", "The scheduler assigns pods to nodes.", [1.0, 0.0, 0.0, 0.0], {"team": "x"}),
    "a2": ("acme", "Etcd stores the cluster state.", [0.0, 1.0, 0.0, 0.0], {"team": "y"}),
    "a3": ("acme", "Kubelet runs containers on a node.", [0.0, 0.0, 1.0, 0.0], {"team": "x"}),
    "b1": ("beta", "The scheduler assigns pods to nodes.", [1.0, 0.0, 0.0, 0.0], {"team": "x"}),
    "b2": ("beta", "Secrets hold passwords and tokens.", [0.0, 0.0, 0.0, 1.0], {"team": "x"}),
}


def _id(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


@pytest.fixture(params=["edge", "qdrant", "fake"])
def new_store(request, tmp_path) -> Iterator[Callable[[], VectorStore]]:
    """Makes empty stores of one implementation (each Qdrant one on storage of its own); closes
    them after the test."""
    opened: list[VectorStore] = []

    def new() -> VectorStore:
        if request.param == "fake":
            store: VectorStore = FakeStore()
        elif request.param == "edge":
            store = EdgeStore(tmp_path / f"edge-{len(opened)}", "ragbus")
        else:
            store = QdrantStore.connect(None, tmp_path / f"qdrant-{len(opened)}", "ragbus")
        opened.append(store)
        return store

    yield new
    for store in opened:
        store.close()


@pytest.fixture
def store(new_store: Callable[[], VectorStore]) -> VectorStore:
    """A store holding `PASSAGES`, each promoted."""
    store = new_store()
    store.ensure_collection(4)
    store.upsert(
        [
            Point(
                id=_id(name),
                vector=vector,
                sparse=encode_document(text),
                payload={
                    "tenant_id": tenant,
                    "document_id": name,
                    "version": "v1",
                    "text": text,
                    "metadata": metadata,
                },
            )
            for name, (tenant, text, vector, metadata) in PASSAGES.items()
        ]
    )
    for name in PASSAGES:
        store.promote(name, "v1")
    return store


def _version_points(
    document: str, version: str, uploaded_at: str, texts: list[str], tenant: str = "acme"
) -> list[Point]:
    return [
        Point(
            id=_id(f"{document}/{version}/{ordinal}"),
            vector=[1.0, 0.0, 0.0, 0.0],
            sparse=encode_document(text),
            payload={
                "tenant_id": tenant,
                "document_id": document,
                "version": version,
                "uploaded_at": uploaded_at,
                "text": text,
            },
        )
        for ordinal, text in enumerate(texts)
    ]


def _texts(store: VectorStore, document: str = "doc") -> list[str]:
    hits = store.search(SearchRequest("acme", 50, dense=[1.0, 0.0, 0.0, 0.0]))
    return sorted(hit.payload["text"] for hit in hits if hit.payload["document_id"] == document)


def _names(hits: list[Hit]) -> list[str]:
    return [hit.payload["document_id"] for hit in hits]


# Generations: the contract, on every implementation.


def _built(store: VectorStore, generation: int, texts: list[str], model: str = "m") -> None:
    """Index one document version of `texts` into `generation` and make it live there."""
    store.ensure_collection(4, model, generation=generation)
    store.upsert(_version_points("doc", "v1", "2026-01-01T00:00:00", texts), generation=generation)
    store.promote("doc", "v1", generation=generation)


def test_a_planned_generation_is_built_beside_the_serving_one_then_swapped_in(new_store):
    store = new_store()
    _built(store, 1, ["old chunking"])
    planned = store.plan("other-model", 64, 8)
    assert (planned.number, planned.state, planned.chunk_tokens, planned.overlap) == (
        2,
        "building",
        64,
        8,
    )
    _built(store, 2, ["new", "chunking"], model="other-model")  # another model: its own index

    assert _texts(store) == ["old chunking"]  # generation 2 does not serve yet
    assert store.document_ids(2) == {"doc"} and store.info(generation=2).points == 2
    assert store.swap(2, keep=1) == []
    assert store.generation() == 2 and _texts(store) == ["chunking", "new"]
    states = {g.number: (g.state, g.model) for g in store.generations()}
    assert states == {1: ("kept", "m"), 2: ("serving", "other-model")}
    with pytest.raises(ValueError, match="never mixes"):
        store.ensure_collection(4, "m")  # the serving generation holds the other model now


def test_a_rollback_is_a_swap_back_and_old_generations_beyond_keep_are_dropped(new_store):
    store = new_store()
    _built(store, 1, ["one"])
    _built(store, store.plan(None, None, None).number, ["two"])
    store.swap(2, keep=1)
    store.swap(1, keep=1)  # the rollback
    assert store.generation() == 1 and _texts(store) == ["one"]
    _built(store, store.plan(None, None, None).number, ["three"])
    assert store.swap(3, keep=1) == [2]  # 1 stays as the one to roll back to
    assert [(g.number, g.state) for g in store.generations()] == [(1, "kept"), (3, "serving")]
    with pytest.raises(UnknownGeneration):
        store.upsert(_version_points("doc", "v1", "2026", ["late"]), generation=2)
    assert store.plan(None, None, None).number == 4  # numbers are never given twice


def test_one_generation_builds_at_a_time_and_the_serving_one_cannot_be_dropped(new_store):
    store = new_store()
    _built(store, 1, ["one"])
    store.plan(None, None, None)
    with pytest.raises(ValueError, match="being built"):
        store.plan(None, None, None)
    with pytest.raises(ValueError, match="serves"):
        store.drop(1)
    store.drop(2)
    assert [g.number for g in store.generations()] == [1]


def test_an_empty_generation_cannot_serve(new_store):
    store = new_store()
    _built(store, 1, ["one"])
    planned = store.plan(None, None, None)
    with pytest.raises(ValueError, match="holds nothing"):
        store.swap(planned.number, keep=1)


def test_generations_and_the_serving_one_survive_a_reopen(tmp_path):
    store = EdgeStore(tmp_path, "ragbus")
    _built(store, 1, ["one"])
    _built(store, store.plan(None, 100, 10).number, ["two"])
    store.swap(2, keep=1)
    store.close()
    reopened = EdgeStore(tmp_path, "ragbus")
    try:
        assert [(g.number, g.state, g.chunk_tokens) for g in reopened.generations()] == [
            (1, "kept", None),
            (2, "serving", 100),
        ]
        assert _texts(reopened) == ["two"]
    finally:
        reopened.close()


def test_a_generation_is_indexed_in_its_own_process_while_writes_wait_and_others_serve(tmp_path):
    store = EdgeStore(tmp_path, "ragbus")
    try:
        _built(store, 1, ["one"])
        _built(store, store.plan(None, 100, 10).number, ["two"])
        store.begin_build(2)
        with pytest.raises(GenerationBusy):
            store.upsert(_version_points("doc", "v2", "2026-02-01", ["later"]), generation=2)
        assert _texts(store) == ["one"]  # the serving generation answers meanwhile
        deadline = time.monotonic() + 120
        while not store.finish_build(2):
            assert time.monotonic() < deadline, "the build did not end"
            time.sleep(0.05)
        store.upsert(_version_points("doc", "v2", "2026-02-01", ["later"]), generation=2)
        assert [g.indexed for g in store.generations()] == [False, True]
    finally:
        store.close()


# The contract: both implementations.


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
@pytest.mark.parametrize("tenant", ["acme", "beta"])
def test_a_tenant_never_gets_another_tenants_chunks(store, mode, tenant):
    question = "which component assigns pods to nodes and stores state and secrets"
    request = SearchRequest(
        tenant,
        limit=10,
        dense=[0.5, 0.5, 0.5, 0.5] if mode != "sparse" else None,
        sparse=encode_query(question) if mode != "dense" else None,
    )
    hits = store.search(request)
    assert hits
    assert {hit.payload["tenant_id"] for hit in hits} == {tenant}


def test_dense_search_ranks_by_cosine(store):
    hits = store.search(SearchRequest("acme", 2, dense=[0.0, 2.0, 0.1, 0.0]))
    assert _names(hits) == ["a2", "a3"]
    assert hits[0].score == pytest.approx(2.0 / np.hypot(2.0, 0.1))


def test_sparse_search_ranks_by_shared_terms(store):
    query = encode_query("where is cluster state kept")
    hits = store.search(SearchRequest("acme", 3, sparse=query))
    assert _names(hits) == ["a2"]  # no other passage shares a term with the question


def test_hybrid_fuses_both_rankings(store):
    # Dense points at a3, the words at a2: both must be in the fused top two.
    request = SearchRequest(
        "acme", 2, dense=[0.0, 0.0, 1.0, 0.0], sparse=encode_query("etcd cluster state")
    )
    assert set(_names(store.search(request))) == {"a2", "a3"}


def test_metadata_filters_match_exactly(store):
    request = SearchRequest(
        "acme", 10, dense=[0.0, 1.0, 0.0, 0.0], filters={"team": "x"}, sparse=None
    )
    assert set(_names(store.search(request))) == {"a1", "a3"}


def test_nothing_to_search_with_gives_nothing(store):
    assert store.search(SearchRequest("acme", 5, sparse=encode_query("the of and"))) == []


def test_generation_follows_the_alias(store, new_store):
    assert store.generation() == 1
    assert new_store().generation() == 0


def test_vectors_of_another_size_are_refused(store):
    with pytest.raises(ValueError, match="4-dim"):
        store.ensure_collection(8)


def test_a_version_is_searched_only_once_promoted(store):
    store.upsert(_version_points("doc", "v1", "2026-01-01T00:00:00", ["old one", "old two"]))
    assert _texts(store) == []
    assert store.count("doc") == store.count("doc", "v1") == 2
    assert store.promote("doc", "v1") == 0
    assert _texts(store) == ["old one", "old two"]


def test_a_new_version_replaces_the_old_one_at_once(store):
    store.upsert(_version_points("doc", "v1", "2026-01-01T00:00:00", ["old one", "old two"]))
    store.promote("doc", "v1")
    # While the new version is written, searches still see the whole old one, and only it.
    store.upsert(_version_points("doc", "v2", "2026-01-02T00:00:00", ["new one"]))
    assert _texts(store) == ["old one", "old two"]
    assert store.count("doc") == 3
    assert store.promote("doc", "v2") == 2
    assert _texts(store) == ["new one"]
    assert store.count("doc") == store.count("doc", "v2") == 1
    assert store.count("doc", "v1") == 0


def test_a_replayed_batch_of_the_live_version_stays_live(store):
    points = _version_points("doc", "v1", "2026-01-01T00:00:00", ["old one", "old two"])
    store.upsert(points)
    store.promote("doc", "v1")
    store.upsert(points[1:])
    assert _texts(store) == ["old one", "old two"]
    assert store.count("doc") == 2  # the same ids overwrite, never duplicate


def test_an_older_version_completing_late_is_dropped_not_served(store):
    store.upsert(_version_points("doc", "v2", "2026-01-02T00:00:00", ["new one"]))
    store.promote("doc", "v2")
    store.upsert(_version_points("doc", "v1", "2026-01-01T00:00:00", ["old one"]))
    assert store.promote("doc", "v1") is None
    assert _texts(store) == ["new one"]
    assert store.count("doc") == 1


def test_promoting_an_unknown_version_changes_nothing(store):
    assert store.promote("nothing", "v1") == 0
    assert store.promote("a1", "v9") == 0
    assert _names(store.search(SearchRequest("acme", 1, dense=[1.0, 0.0, 0.0, 0.0]))) == ["a1"]


def test_a_deleted_document_leaves_no_point_and_spares_other_tenants(store):
    store.upsert(_version_points("doc", "v1", "2026-01-01T00:00:00", ["one", "two"]))
    store.upsert(_version_points("doc", "v2", "2026-01-02T00:00:00", ["three"]))
    assert store.delete_document("doc", "beta") == 0
    assert store.delete_document("doc", "acme") == 3
    assert store.count("doc") == 0
    assert store.delete_document("doc", "acme") == 0


def test_a_document_id_of_another_tenant_is_not_deleted(store):
    store.upsert(_version_points("doc", "v1", "2026-01-01T00:00:00", ["one"], tenant="beta"))
    assert store.delete_document("doc", "acme") == 0
    assert store.count("doc") == 1


def test_index_info_counts_one_tenants_points_and_documents(store, new_store):
    everything, acme = store.info(), store.info("acme")
    assert (everything.points, everything.documents) == (5, 5)
    assert (acme.points, acme.documents) == (3, 3)
    assert (acme.alias, acme.collection, acme.generation) == ("ragbus", "ragbus_g1", 1)
    assert store.info("nobody").points == 0
    empty = new_store().info()
    assert (empty.collection, empty.generation, empty.points) == ("", 0, 0)


# QdrantStore alone.


@pytest.mark.parametrize("new_store", ["qdrant"], indirect=True)
def test_a_promotion_cut_off_before_its_registry_update_completes_when_redone(store):
    store.upsert(_version_points("doc", "v1", "2026-01-01T00:00:00", ["old one", "old two"]))
    store.promote("doc", "v1")
    store.upsert(_version_points("doc", "v2", "2026-01-02T00:00:00", ["new one"]))
    before = store._registered(store.alias, ["doc"])["doc"]
    store.promote("doc", "v2")
    store._register(
        store.alias, [before]
    )  # as if the indexer died between the swap and the registry write

    assert store.promote("doc", "v2") == 0  # the old points are gone already
    assert _texts(store) == ["new one"]
    assert store.count("doc") == store.count("doc", "v2") == 1
    assert store._registered(store.alias, ["doc"])["doc"].versions.keys() == {"v2"}


def test_a_collection_without_sparse_vectors_is_refused_with_a_reason(tmp_path):
    store = QdrantStore.connect(None, tmp_path / "old", "ragbus")
    store.client.create_collection(
        "ragbus_g1", vectors_config=qm.VectorParams(size=4, distance=qm.Distance.COSINE)
    )
    store.client.update_collection_aliases(
        change_aliases_operations=[
            qm.CreateAliasOperation(
                create_alias=qm.CreateAlias(collection_name="ragbus_g1", alias_name="ragbus")
            )
        ]
    )
    with pytest.raises(ValueError, match="re-ingest"):
        store.ensure_collection(4)
    store.close()


def test_points_without_the_live_flag_are_refused_with_a_reason(tmp_path):
    store = QdrantStore.connect(None, tmp_path / "unflagged", "ragbus")
    store.ensure_collection(4)
    (point,) = _version_points("doc", "v1", "2026-01-01T00:00:00", ["text"])
    store.client.upsert(
        "ragbus",
        [
            qm.PointStruct(
                id=point.id,
                vector={
                    "dense": list(point.vector),
                    "sparse": qm.SparseVector(indices=[1], values=[1.0]),
                },
                payload=point.payload,
            )
        ],
    )
    reopened = QdrantStore(store.client, "ragbus")
    with pytest.raises(ValueError, match="live"):
        reopened.ensure_collection(4)
    store.close()


def test_points_without_a_document_registry_are_refused_with_a_reason(tmp_path):
    store = QdrantStore.connect(None, tmp_path / "unregistered", "ragbus")
    collection = store.ensure_collection(4)
    store.upsert(_version_points("doc", "v1", "2026-01-01T00:00:00", ["text"]))
    store.client.delete_collection(collection + REGISTRY_SUFFIX)
    reopened = QdrantStore(store.client, "ragbus")
    with pytest.raises(ValueError, match="no document registry"):
        reopened.ensure_collection(4)
    store.close()


def test_vectors_of_another_model_are_refused_with_a_reason(new_store):
    store = new_store()
    collection = store.ensure_collection(4, "minilm-int8-pc")
    assert store.ensure_collection(4, "minilm-int8-pc") == collection
    with pytest.raises(ValueError, match="holds vectors of model 'minilm-int8-pc', these are of"):
        store.ensure_collection(4, "other-model")
