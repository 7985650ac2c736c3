"""What only the embedded engine (`EdgeStore`) does: the bool-filter trap, persistence across a
reopen, one opener per directory, refusing vectors of other dimensions, a shard process that
goes with its parent."""

import os
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest
from qdrant_edge import CountRequest, FieldCondition, Filter, MatchValue

from ragbus.adapters.edge_shard import Shard, ShardGone, create_shard, match
from ragbus.adapters.edge_store import EdgeStore
from ragbus.ports import Point, SearchRequest
from ragbus.sparse import encode_document

pytestmark = pytest.mark.unit

# Enough 384-d points for a graph to be built (the engine scans smaller segments).
BUILT_POINTS = 10_000


def point(document_id: str, version: str, n: int, dense: list[float]) -> Point:
    return Point(
        id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{document_id}/{version}/{n}")),
        vector=dense,
        sparse=encode_document(f"chunk {n} of {document_id}"),
        payload={
            "document_id": document_id,
            "tenant_id": "acme",
            "version": version,
            "uploaded_at": "2026-12-03T00:00:00",
            "metadata": {},
            "text": f"chunk {n}",
        },
    )


@pytest.fixture
def store(tmp_path):
    store = EdgeStore(tmp_path / "index", "ragbus")
    store.ensure_collection(2)
    store.upsert([point("d1", "v1", 0, [1.0, 0.0]), point("d1", "v1", 1, [0.0, 1.0])])
    store.promote("d1", "v1")
    yield store
    store.close()


def test_a_bool_filter_goes_through_the_helper_because_a_python_bool_matches_nothing(tmp_path):
    shard = Shard(create_shard(tmp_path / "shard", 2))
    try:
        shard.upsert([point("d1", "v1", 0, [1.0, 0.0]), point("d1", "v1", 1, [0.0, 1.0])])
        shard.promote("d1", "v1")
        assert shard.count_matching("live", True) == 2
        assert shard.count_matching("live", False) == 0
        # The trap the helper avoids: MatchValue(True) becomes the integer 1 and matches no bool.
        trap = Filter(must=[FieldCondition("live", match=MatchValue(True))])
        assert shard.shard.count(CountRequest(filter=trap)) == 0
        assert shard.shard.count(CountRequest(filter=Filter(must=[match("live", True)]))) == 2
    finally:
        shard.close()


def test_the_index_is_back_after_a_reopen(store, tmp_path):
    store.close()
    reopened = EdgeStore(tmp_path / "index", "ragbus")
    try:
        assert reopened.generation() == 1
        assert reopened.info().points == 2
        hits = reopened.search(SearchRequest(tenant_id="acme", limit=1, dense=[1.0, 0.0]))
        assert [hit.payload["text"] for hit in hits] == ["chunk 0"]
    finally:
        reopened.close()


def test_a_second_opener_of_the_same_directory_is_refused(store, tmp_path):
    with pytest.raises(Exception, match="WAL"):
        EdgeStore(tmp_path / "index", "ragbus", lock_wait_s=0)


def test_vectors_of_other_dimensions_are_refused_with_a_reason(store):
    with pytest.raises(ValueError, match="holds 2-dim vectors, model gives 384"):
        store.ensure_collection(384)


def test_a_call_failing_in_the_shard_process_raises_here_and_the_shard_serves_on(store):
    with pytest.raises(Exception, match="dimension"):
        store.upsert([point("d2", "v1", 0, [1.0, 0.0, 0.0])])  # 3 numbers for a 2-dim vector
    assert store.info().points == 2


def test_a_shard_process_goes_with_its_parent_and_frees_the_directory(tmp_path):
    opener = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path;"
            "from ragbus.adapters.edge_store import EdgeStore;"
            "EdgeStore(Path(sys.argv[1]), 'ragbus').ensure_collection(2);"
            "print('open', flush=True); time.sleep(120)",
            str(tmp_path / "index"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert opener.stdout is not None and opener.stdout.readline() == "open\n"
    finally:
        opener.kill()
        opener.wait()
    reopened = EdgeStore(tmp_path / "index", "ragbus", lock_wait_s=30)
    try:
        assert reopened.generation() == 1 and reopened.info().points == 0
    finally:
        reopened.close()


def test_a_shard_process_killed_during_its_build_loses_nothing_and_builds_again(tmp_path):
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(BUILT_POINTS, 384)).astype(np.float32)
    store = EdgeStore(tmp_path / "index", "ragbus")
    try:
        store.ensure_collection(384)
        for start in range(0, BUILT_POINTS, 1_000):
            store.upsert(
                [
                    point(f"d{n // 10}", "v1", n % 10, vectors[n].tolist())
                    for n in range(start, start + 1_000)
                ]
            )
        store.begin_build(1)
        time.sleep(0.05)  # the build is under way: it takes seconds here
        os.kill(store.shard_pids()[1], signal.SIGKILL)
        with pytest.raises(ShardGone):
            while not store.finish_build(1):
                time.sleep(0.05)
        assert store.info().points == BUILT_POINTS  # started again, every point there
        store.begin_build(1)
        while not store.finish_build(1):
            time.sleep(0.05)
        assert store.generations()[0].indexed
        assert store.shard().call(Shard.indexed_vectors) >= BUILT_POINTS
    finally:
        store.close()
