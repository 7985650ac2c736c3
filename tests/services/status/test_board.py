import asyncio

import pytest
from fastapi import HTTPException

from contracts.events import DocumentState, StatusUpdate
from services.status.board import StatusBoard
from services.status.routes import stream_status
from services.status.settings import StatusSettings

pytestmark = pytest.mark.unit


def update(document_id, tenant, state=DocumentState.RECEIVED):
    return StatusUpdate(document_id=document_id, tenant_id=tenant, stage="ingest", state=state)


async def test_watch_sends_current_records_then_changes_of_the_tenant_only():
    board = StatusBoard()
    board.apply(update("a", "t1"))
    board.apply(update("x", "t2"))
    seen = []

    async def watch():
        async for record in board.watch("t1"):
            seen.append(record and record.document_id)
            if len(seen) == 3:
                return

    task = asyncio.create_task(watch())
    await asyncio.sleep(0.01)
    board.apply(update("y", "t2"))
    board.apply(update("b", "t1"))
    await asyncio.wait_for(task, 1)
    assert seen == ["a", None, "b"]


def test_get_and_list_never_cross_tenants():
    board = StatusBoard()
    board.apply(update("a", "t1"))
    board.apply(update("b", "t2", DocumentState.CHUNKING))
    assert board.get("t2", "a") is None
    assert [r.document_id for r in board.list("t2")] == ["b"]
    assert board.list("t2", DocumentState.RECEIVED) == []


async def test_a_tenant_may_hold_only_so_many_status_streams_open():
    board = StatusBoard()
    settings = StatusSettings(max_streams_per_tenant=2)
    watchers = [board.watch("acme") for _ in range(2)]
    for watcher in watchers:
        assert await anext(watcher) is None  # "ready": watching from now on
    with pytest.raises(HTTPException) as refused:
        await stream_status("acme", board, settings)
    assert refused.value.status_code == 429
    assert "RAGBUS_MAX_STREAMS_PER_TENANT" in refused.value.detail
    await stream_status("beta", board, settings)  # another tenant is not held back
    await watchers[0].aclose()
    await stream_status("acme", board, settings)  # a stream closed frees its place
