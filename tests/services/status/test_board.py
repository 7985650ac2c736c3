import asyncio

import pytest

from contracts.events import DocumentState, StatusUpdate
from services.status.board import StatusBoard

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
