"""Index generations, as the indexer (which owns the index) plans, gates, swaps and rolls
them back; every change is written to `index.generations`, which the chunkers follow.

A rebuild: `plan` records generation N+1 with its embedding model and chunking; the chunkers
start a consumer group for it that replays the corpus (`document.uploaded`, compacted by
document) while generation N keeps serving and new uploads reach both. `promote` runs the gate
(the rebuild caught up, every live document of N present in N+1, canary queries answered by
N+1), builds N+1's HNSW graph where it cannot stall queries, swaps in one step and announces
the swap on `index.promoted`. `rollback` swaps back to the generation that served before.
"""

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from contracts.events import GenerationPlan, IndexSwapped
from contracts.events import GenerationState as PlanState
from contracts.topics import (
    CHUNKS_READY,
    CONSUMER_GROUPS,
    DOCUMENT_UPLOADED,
    INDEX_GENERATIONS,
    INDEX_PROMOTED,
    VECTORS_READY,
)
from ragbus import metrics
from ragbus.adapters.store import StoreRunner
from ragbus.bus import Bus
from ragbus.lag import LagReader
from ragbus.ports import Generation, SearchRequest, previous_generation
from ragbus.sparse import encode_query

log = logging.getLogger(__name__)

# Canary queries: a passage of each of this many documents of the serving generation, asked of
# the new one, which must rank the passage's document among its first CANARY_DEPTH results.
CANARIES = 20
CANARY_DEPTH = 10
CANARY_WORDS = 40
CANARY_PASS = 0.9
# How often a running HNSW build is asked whether it has ended.
BUILD_POLL_S = 0.5


class GateClosed(RuntimeError):
    """The generation may not serve yet: `report` says why."""

    def __init__(self, report: "Gate") -> None:
        super().__init__("; ".join(report.reasons))
        self.report = report


@dataclass
class Gate:
    """What stands between a generation and serving."""

    generation: int
    lag: dict[str, int] = field(default_factory=dict)
    """Records a consumer group of the rebuild has not committed, by group."""
    documents: int = 0
    """Live documents of the serving generation."""
    missing: list[str] = field(default_factory=list)
    """Live documents of the serving generation that the new one lacks."""
    canaries: int = 0
    canaries_answered: int = 0
    reasons: list[str] = field(default_factory=list)
    """Why it may not serve, the missing documents' reason last (see `open_accepting`)."""

    @property
    def open(self) -> bool:
        return not self.reasons

    def open_accepting(self, missing: bool) -> bool:
        """Open, or (`missing`) closed only for the documents missing in the generation."""
        only_missing = len(self.reasons) == 1 and bool(self.missing)
        return self.open or (missing and only_missing)


class Generations:
    """The indexer's generation operations over its store, announced on the bus."""

    def __init__(self, runner: StoreRunner, bus: Bus, kafka: Mapping[str, Any], keep: int) -> None:
        self.runner, self.bus, self.kafka, self.keep = runner, bus, kafka, keep
        self._lock = asyncio.Lock()

    async def kept(self) -> list[Generation]:
        """Every generation the store keeps, oldest first."""
        return await self.runner.run(self.runner.store.generations)

    async def announce(self, retired: Sequence[Generation] = ()) -> None:
        """Write every generation's plan (and the retired ones') to `index.generations`."""
        plans = [_plan(self.runner.store.alias, g, g.state) for g in await self.kept()]
        plans += [_plan(self.runner.store.alias, g, "retired") for g in retired]
        if plans:
            await self.bus.publish(INDEX_GENERATIONS, plans)

    async def plan(
        self, embed_model: str | None, chunk_tokens: int | None, overlap: int | None
    ) -> Generation:
        async with self._lock:
            store = self.runner.store
            if await self.runner.run(store.generation) == 0:
                raise ValueError("nothing is indexed yet: there is no generation to rebuild")
            planned = await self.runner.run(lambda: store.plan(embed_model, chunk_tokens, overlap))
            await self.announce()
            log.info("planned generation %d: %s", planned.number, asdict(planned))
            return planned

    async def gate(self, generation: int) -> Gate:
        store = self.runner.store
        report = Gate(generation)
        chosen = next((g for g in await self.kept() if g.number == generation), None)
        if chosen is None:
            report.reasons.append(f"there is no generation {generation}")
            return report
        if chosen.state == "serving":
            report.reasons.append(f"generation {generation} serves already")
            return report
        report.lag = await self._lag(chosen)
        behind = {group: lag for group, lag in report.lag.items() if lag}
        if behind:
            report.reasons.append(f"the rebuild is behind: {behind} records to go")
        serving = await self.runner.run(lambda: store.document_ids(store.generation()))
        built = await self.runner.run(lambda: store.document_ids(generation))
        report.documents = len(serving)
        report.missing = sorted(serving - built)
        metrics.GENERATION_DOCUMENTS.labels(generation, chosen.state).set(len(built))
        metrics.GENERATION_LAG.labels(generation).set(sum(report.lag.values()))
        report.canaries, report.canaries_answered = await self._canaries(generation, built)
        if report.canaries and report.canaries_answered < CANARY_PASS * report.canaries:
            report.reasons.append(
                f"generation {generation} answered {report.canaries_answered} of "
                f"{report.canaries} canary queries"
            )
        if report.missing:
            report.reasons.append(
                f"{len(report.missing)} of {len(serving)} live documents are not in generation "
                f"{generation} yet (or failed there: see the dead letters)"
            )
        return report

    async def _lag(self, chosen: Generation) -> dict[str, int]:
        plan = _plan(self.runner.store.alias, chosen, chosen.state)
        groups = [
            (plan.consumer_group, DOCUMENT_UPLOADED),
            (CONSUMER_GROUPS["embedder"], CHUNKS_READY),
            (CONSUMER_GROUPS["indexer"], VECTORS_READY),
        ]
        async with LagReader(self.kafka, client_id="ragbus-gate") as reader:
            return {group: (await reader.read(group, topic)).total for group, topic in groups}

    async def _canaries(self, generation: int, built: set[str]) -> tuple[int, int]:
        """(asked, answered): a passage of each of up to CANARIES documents of the serving
        generation that `generation` holds too (the missing ones are told apart), searched in
        `generation` by its words."""
        store = self.runner.store
        sampled = await self.runner.run(lambda: store.sample(None, CANARIES))
        samples = [hit for hit in sampled if hit.payload.get("document_id") in built]
        answered = 0
        for hit in samples:
            words = " ".join(str(hit.payload.get("text", "")).split()[:CANARY_WORDS])
            request = SearchRequest(
                str(hit.payload["tenant_id"]), CANARY_DEPTH, sparse=encode_query(words)
            )
            found = await self.runner.run(partial(store.search, request, generation))
            document = hit.payload["document_id"]
            answered += any(h.payload.get("document_id") == document for h in found)
        return len(samples), answered

    async def promote(self, generation: int, accept_missing: bool = False) -> IndexSwapped:
        """Gate, build the HNSW graph, swap; announce. Raises `GateClosed` with the report."""
        async with self._lock:
            report = await self.gate(generation)
            if not report.open_accepting(missing=accept_missing):
                raise GateClosed(report)
            await self._build(generation)
            return await self._swap(generation)

    async def rollback(self) -> IndexSwapped:
        """Serve the generation that served before, in one step (its graph is built)."""
        async with self._lock:
            previous = previous_generation(await self.kept())
            if previous is None:
                raise ValueError("no generation is kept to roll back to")
            return await self._swap(previous.number)

    async def drop(self, generation: int) -> None:
        """Abandon a generation that does not serve (a rebuild given up, an old one)."""
        async with self._lock:
            chosen = next((g for g in await self.kept() if g.number == generation), None)
            await self.runner.run(lambda: self.runner.store.drop(generation))
            await self.announce([chosen] if chosen else [])

    async def _build(self, generation: int) -> None:
        """The HNSW graph, built where the store builds it (the embedded engine: in the
        generation's own process, since a build holds its GIL throughout); waited for here
        without holding the store's runner."""
        store = self.runner.store
        await self.runner.run(lambda: store.begin_build(generation))
        while not await self.runner.run(lambda: store.finish_build(generation)):
            await asyncio.sleep(BUILD_POLL_S)

    async def _swap(self, generation: int) -> IndexSwapped:
        store = self.runner.store
        before = await self.kept()
        previous = await self.runner.run(store.generation)
        dropped = await self.runner.run(lambda: store.swap(generation, self.keep))
        chosen = next(g for g in before if g.number == generation)
        swapped = IndexSwapped(
            alias=store.alias,
            collection=chosen.collection,
            generation=generation,
            previous=previous,
            model=chosen.model,
        )
        await self.bus.publish(INDEX_PROMOTED, [swapped])
        await self.announce([g for g in before if g.number in dropped])
        log.info("generation %d serves (was %d); dropped %s", generation, previous, dropped)
        return swapped


def _plan(alias: str, generation: Generation, state: PlanState) -> GenerationPlan:
    return GenerationPlan(
        alias=alias,
        generation=generation.number,
        plan_id=generation.plan_id,
        state=state,
        embed_model=generation.embed_model,
        chunk_tokens=generation.chunk_tokens,
        overlap=generation.overlap,
    )
