"""The chunker's subscribers: `document.uploaded` in, `chunks.ready` out, once per index
generation; `index.generations` followed to know them.

Generation 1 has the chunker's original consumer group, subscribed at start. Every later
generation the indexer plans gets a consumer group of its own, subscribed while the service
runs: a new group starts at the earliest record, so it replays the whole corpus (the topic is
compacted by document) into the new generation, then follows new uploads, until the generation
is retired.
"""

import logging
from collections.abc import Callable
from functools import partial

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.subscriber.usecase import BatchSubscriber

from contracts.events import DocumentUploaded, GenerationPlan, UploadOrDelete
from contracts.topics import DOCUMENT_UPLOADED, INDEX_GENERATIONS
from ragbus import metrics
from ragbus.bus import Bus, Record
from ragbus.stage import Outcome, appended_at, handle, subscribe

from .handlers import ReadBlob, Split, chunk_all

GROUP = GenerationPlan(alias="", generation=1, plan_id="-", state="serving").consumer_group
log = logging.getLogger(__name__)

SplitFor = Callable[[GenerationPlan | None], Split]
"""The split of a generation's chunking (None: the chunker's own settings)."""


def uploaded_when_appended(record: Record, event: UploadOrDelete) -> UploadOrDelete:
    """An upload's time is when the broker appended it, not what its producer wrote: a producer
    cannot pin its version ahead of later uploads with a time in the future."""
    when = appended_at(record)
    if when is None or not isinstance(event, DocumentUploaded):
        return event
    return event.model_copy(update={"occurred_at": when})


class Generations:
    """The chunker's view of `index.generations`, and a subscriber per generation it builds."""

    def __init__(self, broker: KafkaBroker, bus: Bus, read: ReadBlob, split_for: SplitFor) -> None:
        self.broker, self.bus, self.read, self.split_for = broker, bus, read, split_for
        self.plans: dict[int, GenerationPlan] = {}
        self.running: dict[int, BatchSubscriber] = {}

    async def rule(self, generation: int, events: list[UploadOrDelete]) -> Outcome:
        plan = self.plans.get(generation)
        if plan is not None and plan.state == "retired":
            return Outcome("chunker")  # its index is gone: nothing to build
        return await chunk_all(events, self.read, self.split_for(plan), plan)

    def subscriber(self, generation: int, group: str, persistent: bool) -> BatchSubscriber:
        subscriber = subscribe(
            self.broker,
            DOCUMENT_UPLOADED,
            UploadOrDelete,
            stage="chunker",
            bus=self.bus,
            group=group,
            # One document at a time: its offset is committed as soon as its chunks are out.
            max_records=1,
            max_poll_interval_ms=15 * 60 * 1000,
            title="chunker" if generation == 1 else f"chunker:g{generation}",
            description=f"Parse and split uploaded documents into chunks of generation "
            f"{generation}; pass deletions on.",
            persistent=persistent,
            stamp=uploaded_when_appended,
        )
        rule = partial(self.rule, generation)

        @subscriber
        async def on_document_uploaded(events: list[UploadOrDelete], message: KafkaMessage) -> None:
            await handle(self.bus, message, rule)

        return subscriber

    async def follow(self, plan: GenerationPlan) -> None:
        """Take a generation's new plan: start its subscriber, or stop it once retired."""
        self.plans[plan.generation] = plan
        if plan.generation == 1:
            return
        running = self.running.get(plan.generation)
        if plan.state == "retired" and running is not None:
            await running.stop()
            del self.running[plan.generation]
            log.info("generation %d retired: stopped its consumer group", plan.generation)
        elif plan.state != "retired" and running is None:
            subscriber = self.subscriber(plan.generation, plan.consumer_group, persistent=False)
            await subscriber.start()
            self.running[plan.generation] = subscriber
            log.info(
                "building generation %d with consumer group %s",
                plan.generation,
                plan.consumer_group,
            )


def register(broker: KafkaBroker, bus: Bus, read: ReadBlob, split_for: SplitFor) -> Generations:
    """Subscribe the chunker to `document.uploaded` (generation 1) and `index.generations`."""
    generations = Generations(broker, bus, read, split_for)
    generations.subscriber(1, GROUP, persistent=True)
    plans = subscribe(
        broker,
        INDEX_GENERATIONS,
        GenerationPlan,
        stage="chunker",
        bus=None,
        group=None,
        max_records=100,
        title="chunker:generations",
        description="Follow the index generations: one consumer group per generation built.",
    )

    @plans
    async def on_generation(events: list[GenerationPlan]) -> None:
        for plan in events:
            await generations.follow(plan)
            metrics.MESSAGES.labels("chunker", INDEX_GENERATIONS, "ok").inc()

    return generations
