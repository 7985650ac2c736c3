"""A consumer group watched from the outside: its state, members and committed progress.

aiokafka speaks only the eager rebalance protocol: every member stops consuming while the group
rebalances. Sampling the group's state and its committed offsets shows how long each change of
membership kept it from committing work (figures for the report, never for an assert), and
when a stage has a batch in hand (the moment the crash test kills it).
"""

import asyncio
import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.bus import kafka_options, partitions_of

SAMPLE_EVERY_S = 0.1


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic()
    state: str  # Stable, PreparingRebalance, CompletingRebalance, … ("" when unreadable)
    protocol: str  # the assignor the group agreed on
    members: int
    committed: tuple[int, ...]  # the group's committed offset of each of the topic's partitions
    end: tuple[int, ...]  # each partition's end offset


class GroupWatcher:
    """Samples `group` on `topic` every `SAMPLE_EVERY_S` on a thread of its own while entered."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.group = group
        self.topic = topic
        self.samples: list[Sample] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(30)
        if self.error is not None and exc is None:
            raise self.error

    def _watch(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # kept for the test's thread, which reports it
            self.error = exc

    def wait_busy(self, timeout: float = 300.0) -> Sample:
        """Until the group has committed since this call (it is consuming) and has records it
        has not committed (work in hand, or the next batch waiting); that sample.

        A stage commits after each batch, so this is the moment a batch is in its hands: a
        kill -9 then meets work in flight, and the offsets say how much.
        """
        deadline = time.monotonic() + timeout
        seen = len(self.samples)
        first: Sample | None = None
        while time.monotonic() < deadline and self.error is None:
            fresh = self.samples[seen:]
            seen += len(fresh)
            for sample in (s for s in fresh if s.state):
                first = first or sample
                done, end = sum(sample.committed), sum(sample.end)
                if done > sum(first.committed) and end > done:
                    return sample
            time.sleep(0.01)
        raise AssertionError(f"{self.group} was not seen busy on {self.topic}") from self.error

    async def _run(self) -> None:
        partitions = await partitions_of(self.bootstrap, [self.topic])
        admin = AIOKafkaAdminClient(**kafka_options(self.bootstrap))
        consumer = AIOKafkaConsumer(**kafka_options(self.bootstrap))
        await admin.start()
        await consumer.start()
        try:
            while not self._stop.is_set():
                self.samples.append(await self._sample(admin, consumer, partitions))
                await asyncio.sleep(SAMPLE_EVERY_S)
        finally:
            await consumer.stop()
            await admin.close()

    async def _sample(
        self,
        admin: AIOKafkaAdminClient,
        consumer: AIOKafkaConsumer,
        partitions: list[TopicPartition],
    ) -> Sample:
        at = time.monotonic()
        try:
            [response] = await admin.describe_consumer_groups([self.group])
            [group] = response.groups
            committed = await admin.list_consumer_group_offsets(self.group, partitions=partitions)
            ends = await consumer.end_offsets(partitions)
        except Exception:  # the coordinator moving or loading: a gap in the samples, no more
            return Sample(at, "", "", 0, (), ())
        state, protocol, members = group[2], group[4], len(group[5])
        return Sample(
            at,
            state,
            protocol,
            members,
            tuple(max(committed[tp].offset, 0) for tp in partitions),
            tuple(ends[tp] for tp in partitions),
        )


def pause(samples: Sequence[Sample], start: float, end: float) -> dict[str, Any]:
    """What the group went through between `start` and `end` (monotonic times): when it began
    to rebalance (after a kill -9, only once the member's session expired), how long it was
    not Stable, the longest time the whole group's commits stood still while it had work
    (`stalled_s`) and the same for any one partition (`partition_stalled_s`: a dead member's
    partitions wait for its session to expire), and the members and assignor before and after."""
    window = [s for s in samples if start <= s.at <= end and s.state]
    if not window:
        return {}
    began = next((s.at - start for s in window if s.state != "Stable"), None)
    unstable = sum(
        later.at - sample.at
        for sample, later in itertools.pairwise(window)
        if sample.state != "Stable"
    )
    whole = [(s.at, sum(s.committed), sum(s.end)) for s in window]
    partitions = [
        [(s.at, s.committed[p], s.end[p]) for s in window] for p in range(len(window[0].end))
    ]
    return {
        "rebalance_began_after_s": None if began is None else round(began, 1),
        "rebalancing_s": round(unstable, 1),
        "stalled_s": round(_longest_stall(whole), 1),
        "partition_stalled_s": round(max(map(_longest_stall, partitions), default=0.0), 1),
        "members": [window[0].members, window[-1].members],
        "assignor": window[-1].protocol,
    }


def _longest_stall(series: Sequence[tuple[float, int, int]]) -> float:
    """The longest time (at, committed, end) shows no commit while there was work to commit."""
    longest, (since, done, _) = 0.0, series[0]
    for at, committed, end in series[1:]:
        if committed != done or committed >= end:
            since, done = at, committed
        longest = max(longest, at - since)
    return longest
