"""A document's life through the events: new versions swap in whole, deletes remove it."""

import threading
import time
from typing import Any

import httpx
import pytest

from contracts.ids import chunk_id

from .conftest import Stack
from .helpers import index_points, long_text, query, status, upload, wait_final

pytestmark = pytest.mark.e2e


def _chunk_ids(record: dict[str, Any]) -> set[str]:
    return {chunk_id(record["document_id"], record["version"], n) for n in range(record["chunks"])}


def _wait_state(stack: Stack, document_id: str, state: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = status(stack, document_id)
        if record is not None and record["state"] == state:
            return record
        time.sleep(0.5)
    raise AssertionError(f"{document_id} never {state}: {status(stack, document_id)}")


def test_a_new_version_replaces_the_old_one_without_a_mix_or_a_gap(stack):
    (v1,) = upload(stack, [("lifecycle/orchard.md", long_text("orchard", 6))])
    first = wait_final(stack, [v1["document_id"]], {v1["document_id"]: v1["version"]})
    old_ids = _chunk_ids(first[v1["document_id"]])
    assert len(old_ids) > 2

    seen: list[set[str]] = []
    stop = threading.Event()

    def keep_asking() -> None:
        # Sparse search matches exactly the chunks that contain the word: all of a version's.
        while not stop.is_set():
            hits = query(stack, "orchard", top_k=50, mode="sparse")
            seen.append({h["chunk_id"] for h in hits if h["document_id"] == v1["document_id"]})

    def answers_beyond(count: int) -> int:
        """Wait until the asker has more than `count` answers (at least three more)."""
        deadline = time.monotonic() + 60
        while len(seen) < count + 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(seen)

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        before_swap = answers_beyond(0)
        (v2,) = upload(stack, [("lifecycle/orchard.md", long_text("orchard keeper", 5))])
        assert v2["version"] != v1["version"]
        second = wait_final(stack, [v1["document_id"]], {v1["document_id"]: v2["version"]})
        swapped = len(seen)
        answers_beyond(swapped)
    finally:
        stop.set()
        asker.join()
    new_ids = _chunk_ids(second[v1["document_id"]])
    assert old_ids.isdisjoint(new_ids)
    # Every answer saw one whole version: never a part of one, both, or none.
    outcomes = [
        "old" if ids == old_ids else "new" if ids == new_ids else f"mixed:{len(ids)}"
        for ids in seen
    ]
    assert set(outcomes) <= {"old", "new"}, [o for o in outcomes if o not in ("old", "new")][:5]
    assert outcomes[0] == "old" and outcomes[-1] == "new"
    assert swapped > before_swap, "no question was answered while the versions swapped"


def test_an_unchanged_upload_is_a_no_op_and_new_metadata_is_a_new_version(stack):
    (doc,) = upload(stack, [("lifecycle/pear.md", long_text("pear", 1))])
    wait_final(stack, [doc["document_id"]], {doc["document_id"]: doc["version"]})
    before = status(stack, doc["document_id"])
    (again,) = upload(stack, [("lifecycle/pear.md", long_text("pear", 1))])
    assert (again["version"], again["unchanged"], again["status"]) == (
        doc["version"],
        True,
        "INDEXED",
    )
    response = httpx.post(
        f"{stack.urls['ingest']}/v1/documents",
        files=[("files", ("lifecycle/pear.md", long_text("pear", 1)))],
        data={"metadata": '{"team": "fruit"}'},
        timeout=60,
    )
    (tagged,) = response.json()["documents"]
    assert tagged["version"] != doc["version"] and not tagged["unchanged"]
    wait_final(stack, [doc["document_id"]], {doc["document_id"]: tagged["version"]})
    assert before is not None and before["state"] == "INDEXED"


def test_a_deleted_document_leaves_the_index_and_can_come_back(stack):
    (doc,) = upload(stack, [("lifecycle/plum.md", long_text("plum", 3))])
    record = wait_final(stack, [doc["document_id"]], {doc["document_id"]: doc["version"]})
    points = index_points(stack)
    deleted = httpx.delete(f"{stack.urls['ingest']}/v1/documents/{doc['document_id']}", timeout=30)
    assert deleted.status_code == 202, deleted.text
    assert deleted.json()["status"] == "INDEXED"
    gone = _wait_state(stack, doc["document_id"], "DELETED")
    assert gone["reason"] == f"deleted ({record[doc['document_id']]['chunks']} points removed)"
    assert index_points(stack) == points - record[doc["document_id"]]["chunks"]
    assert not [
        h for h in query(stack, "plum", 50, "sparse") if h["document_id"] == doc["document_id"]
    ]

    (back,) = upload(stack, [("lifecycle/plum.md", long_text("plum", 3))])
    assert not back["unchanged"]
    assert _wait_state(stack, doc["document_id"], "INDEXED")["chunks"] == 3


def test_a_delete_right_after_the_upload_wins_over_the_upload_in_flight(stack):
    (doc,) = upload(stack, [("lifecycle/quince.md", long_text("quince", 4))])
    deleted = httpx.delete(f"{stack.urls['ingest']}/v1/documents/{doc['document_id']}", timeout=30)
    assert deleted.status_code == 202, deleted.text
    _wait_state(stack, doc["document_id"], "DELETED")
    time.sleep(2)  # nothing of the upload may come back after the deletion
    assert status(stack, doc["document_id"])["state"] == "DELETED"
    assert not [
        h for h in query(stack, "quince", 50, "sparse") if h["document_id"] == doc["document_id"]
    ]


def test_deleting_an_unknown_document_is_a_404(stack):
    response = httpx.delete(f"{stack.urls['ingest']}/v1/documents/no-such-document", timeout=30)
    assert response.status_code == 404
    assert "no-such-document" in response.json()["detail"]
