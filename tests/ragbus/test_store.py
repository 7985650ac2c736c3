"""The Qdrant adapter on real embedded storage: dense, sparse and fused search, tenants, filters."""

import uuid

import pytest
from qdrant_client import models as qm

from ragbus.sparse import encode_document, encode_query
from ragbus.store import Point, QdrantStore, SearchRequest

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


@pytest.fixture
def store(tmp_path):
    store = QdrantStore.connect(None, tmp_path / "qdrant", "ragbus")
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
    yield store
    store.close()


def _names(hits):
    return [hit.payload["document_id"] for hit in hits]


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


def test_sparse_search_ranks_by_shared_terms(store):
    query = encode_query("where is cluster state kept")
    hits = store.search(SearchRequest("acme", 3, sparse=query))
    assert _names(hits)[0] == "a2"


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


def test_generation_follows_the_alias(store, tmp_path):
    assert store.generation() == 1
    empty = QdrantStore.connect(None, tmp_path / "empty", "ragbus")
    assert empty.generation() == 0
    empty.close()


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
