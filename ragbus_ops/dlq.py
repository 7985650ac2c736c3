"""`ragbus dlq list|replay`: find the messages the stages gave up on, and replay them after a fix.

`list` reads the dead-letter topics from their beginning to their end offsets as they are when it
starts (it never waits for new letters). `replay` re-publishes each selected letter's original
bytes to its original topic with its original key (so it lands on the document's partition, in
order with the document's other events) and a `ragbus-replayed-from: <dlq topic>/<partition>/
<offset>` header, waits for the broker's acks, and only then records the letters as replayed.
A letter whose document was deleted after it (a tombstone follows its original record) is
refused with the reason, and recorded as handled: replaying it would bring the document back.

The record is the committed offsets of the consumer group `ragbus-dlq-replay` on the DLQ
partitions. A committed offset only advances over a contiguous run of handled records (replayed,
or unreadable and so passed over), so a letter a filter left out stays replayable; the letters
replayed past the first one still pending are listed in the commit's metadata as offset ranges
(`replayed:17-19,25`). A crash between the acks and the commit replays those letters again next
time, which every stage tolerates (they are idempotent). Run one replay at a time. The broker
keeps the record `offsets.retention.minutes` (7 days by default) after the last replay: keep that
at least as long as the DLQ topics' retention.
"""

import argparse
import asyncio
import base64
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeAlias, get_args

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from contracts.events import DeadLetter, Stage, describe_validation_error
from contracts.topics import CONSUMED, MAX_MESSAGE_BYTES, dlq
from ragbus.lag import COORDINATOR_TRANSIENT
from ragbus.retry import retry
from ragbus_ops.bus import operator_kafka

REPLAY_GROUP = "ragbus-dlq-replay"
REPLAYED_FROM = "ragbus-replayed-from"
CLIENT_ID = "ragbus-dlq"
# The broker's default `offset.metadata.max.bytes`: the most a commit's metadata may hold.
MAX_METADATA_BYTES = 4096
_METADATA_PREFIX = "replayed:"
# `ragbus.bus.Record`, named again: importing the bus (FastStream) would slow every CLI command.
Record: TypeAlias = "ConsumerRecord[bytes | None, bytes | None]"
# A read of the DLQ topics that gets no record for this long means the broker went away.
STALL_S = 30.0
DELETED_SINCE = (
    "its document was deleted after it was dead-lettered: replaying it would bring the document "
    "back (upload it again instead)"
)


class DlqError(Exception):
    """A failure the operator can act on: the CLI prints it, without a traceback."""


@dataclass(frozen=True)
class Selection:
    """Which letters a command is about: the DLQs of `topics` (consumed topics), narrowed by
    document, tenant and stage where they are given."""

    topics: tuple[str, ...] = CONSUMED
    document_id: str | None = None
    tenant_id: str | None = None
    stage: str | None = None

    @property
    def narrowed(self) -> bool:
        return any(value is not None for value in (self.document_id, self.tenant_id, self.stage))

    def matches(self, letter: DeadLetter) -> bool:
        return all(
            wanted is None or wanted == actual
            for wanted, actual in (
                (self.document_id, letter.document_id),
                (self.tenant_id, letter.tenant_id),
                (self.stage, letter.stage),
            )
        )


@dataclass(frozen=True)
class Entry:
    """One record of a dead-letter topic: the letter, or why it is none (`problem`)."""

    dlq_topic: str
    partition: int
    offset: int
    when: datetime
    letter: DeadLetter | None
    problem: str | None = None
    replayed: bool = False

    @property
    def position(self) -> str:
        return f"{self.dlq_topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True)
class ReplayResult:
    replayed: list[Entry]  # re-published (or, in a dry run, to be)
    unreadable: list[Entry]  # passed over: not letters this command can replay
    refused: list[tuple[Entry, str]] = field(default_factory=list)  # handled, never replayed


def original_value(letter: DeadLetter) -> bytes:
    """The bytes the stage could not process, as the letter keeps them."""
    if letter.payload_truncated:
        raise ValueError(
            f"the original value ({letter.payload_bytes} bytes, sha256 {letter.payload_sha256}) "
            "was too large to keep whole: publish the document again"
        )
    if letter.payload_encoding == "base64":
        return base64.b64decode(letter.payload, validate=True)
    return letter.payload.encode()


async def list_letters(kafka: Mapping[str, Any], selection: Selection = Selection()) -> list[Entry]:
    """Every selected dead letter, oldest first, with whether it was replayed. A record that is
    no letter is listed only when nothing narrows the selection."""
    async with _connected(kafka) as (consumer, admin):
        partitions = await _scan(consumer, admin, selection, from_committed=False)
    entries = [
        entry
        for partition in partitions
        for entry in partition.entries
        if (selection.matches(entry.letter) if entry.letter else not selection.narrowed)
    ]
    # A consumer that replays its topic (the status service, at every start) dead-letters the
    # same record again under the same event id: list it once.
    seen: set[str] = set()
    unique = []
    for entry in sorted(entries, key=lambda entry: (entry.when, entry.position)):
        if entry.letter is None or entry.letter.event_id not in seen:
            unique.append(entry)
        if entry.letter is not None:
            seen.add(entry.letter.event_id)
    return unique


async def replay(
    kafka: Mapping[str, Any], selection: Selection = Selection(), dry_run: bool = False
) -> ReplayResult:
    """Re-publish every selected letter not replayed yet, then record it as replayed."""
    async with _connected(kafka) as (consumer, admin):
        partitions = await _scan(consumer, admin, selection, from_committed=True)
        chosen = {
            partition.tp: [
                entry
                for entry in partition.entries
                if entry.letter and not entry.replayed and selection.matches(entry.letter)
            ]
            for partition in partitions
        }
        progress = {
            partition.tp: partition.advanced({entry.offset for entry in chosen[partition.tp]})
            for partition in partitions
        }
        # Before anything is published: a record too large to commit fails the whole replay.
        commits = {
            tp: OffsetAndMetadata(state.committed, state.metadata(tp))
            for tp, state in progress.items()
        }
        chosen_letters = [entry for entries in chosen.values() for entry in entries]
        deleted = await _deleted_since(kafka, chosen_letters)
        refused = [(entry, DELETED_SINCE) for entry in chosen_letters if entry.position in deleted]
        letters = [entry for entry in chosen_letters if entry.position not in deleted]
        unreadable = [entry for part in partitions for entry in part.entries if not entry.letter]
        if not dry_run:
            await _publish(kafka, [(e.position, e.letter) for e in letters if e.letter])
            await consumer.commit(commits)
    return ReplayResult(letters, unreadable, refused)


async def _deleted_since(kafka: Mapping[str, Any], entries: Sequence[Entry]) -> set[str]:
    """The positions of the letters whose document was deleted after them: a tombstone of the
    document follows the letter's original record on its partition (a tombstone travels along
    every topic a document's events do). Replaying such a letter would bring the document
    back."""
    keyed: dict[TopicPartition, dict[bytes, list[tuple[int, str]]]] = {}
    for entry in entries:
        letter = entry.letter
        if letter is None or letter.key is None:
            continue
        tp = TopicPartition(letter.topic, letter.partition)
        keyed.setdefault(tp, {}).setdefault(letter.key.encode(), []).append(
            (letter.offset, entry.position)
        )
    if not keyed:
        return set()
    consumer = AIOKafkaConsumer(
        **kafka,
        client_id=CLIENT_ID,
        enable_auto_commit=False,
        auto_offset_reset="earliest",  # an original compacted away: read from what is left
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
    )
    await consumer.start()
    try:
        consumer.assign(list(keyed))
        ends = await consumer.end_offsets(list(keyed))
        starts = {
            tp: min(offset for letters in keys.values() for offset, _ in letters) + 1
            for tp, keys in keyed.items()
        }
        records = await _read(consumer, {tp: min(starts[tp], ends[tp]) for tp in keyed}, ends)
    finally:
        await consumer.stop()
    deleted = set()
    for tp, got in records.items():
        for record in got:
            letters = keyed[tp].get(record.key or b"", [])
            if letters and _is_tombstone(record.value):
                deleted |= {position for offset, position in letters if offset < record.offset}
    return deleted


def _is_tombstone(value: bytes | None) -> bool:
    try:
        event = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return False
    return isinstance(event, dict) and event.get("kind") == "deleted"


@dataclass(frozen=True)
class _Progress:
    """What the replay group's commit on a DLQ partition says: every record below `committed`
    is handled, and so are the letters at `replayed` (all past the first one still pending)."""

    committed: int = 0
    replayed: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, tp: TopicPartition, commit: OffsetAndMetadata | None) -> "_Progress":
        if commit is None or commit.offset < 0:
            return cls()
        if commit.metadata and not commit.metadata.startswith(_METADATA_PREFIX):
            raise DlqError(
                f"group {REPLAY_GROUP} has a commit on {tp.topic}/{tp.partition} that ragbus did "
                f"not write (metadata {commit.metadata[:80]!r})"
            )
        return cls(commit.offset, _offsets(commit.metadata.removeprefix(_METADATA_PREFIX)))

    def handled(self, offset: int) -> bool:
        return offset < self.committed or offset in self.replayed

    def metadata(self, tp: TopicPartition) -> str:
        text = _METADATA_PREFIX + _ranges(self.replayed)
        if len(text.encode()) > MAX_METADATA_BYTES:
            raise DlqError(
                f"{tp.topic}/{tp.partition}: too many letters replayed past the pending one at "
                f"offset {self.committed} to record; replay that one (or fewer filters) first"
            )
        return text


@dataclass(frozen=True)
class _Partition:
    """A DLQ partition as read: its entries up to `end` and the replay progress before."""

    tp: TopicPartition
    progress: _Progress
    end: int
    entries: list[Entry]

    def advanced(self, replaying: set[int]) -> _Progress:
        """The progress once the letters at `replaying` are replayed: the commit moves up to
        the first record still pending, and the replayed letters past it are listed."""
        done = [entry.replayed or entry.offset in replaying for entry in self.entries]
        pending = (
            entry.offset
            for entry, replayed in zip(self.entries, done, strict=True)
            if entry.letter and not replayed
        )
        committed = next(pending, max(self.progress.committed, self.end))
        return _Progress(
            committed,
            frozenset(
                entry.offset
                for entry, replayed in zip(self.entries, done, strict=True)
                if replayed and entry.offset >= committed
            ),
        )


@asynccontextmanager
async def _connected(
    kafka: Mapping[str, Any],
) -> AsyncIterator[tuple[AIOKafkaConsumer, AIOKafkaAdminClient]]:
    """A consumer of the replay group (manually assigned, never joining it) and an admin client
    to read the group's commits; Kafka errors become a `DlqError` that says what failed."""
    consumer = AIOKafkaConsumer(
        **kafka,
        client_id=CLIENT_ID,
        group_id=REPLAY_GROUP,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
    )
    admin = AIOKafkaAdminClient(**kafka, client_id=CLIENT_ID)
    where = kafka["bootstrap_servers"]
    try:
        await consumer.start()
        await admin.start()
        yield consumer, admin
    except KafkaConnectionError as exc:
        raise DlqError(f"cannot reach the Kafka broker at {where}: {exc}") from None
    except KafkaError as exc:
        raise DlqError(f"Kafka error at {where}: {exc!r}") from None
    finally:
        await admin.close()
        await consumer.stop()


async def _scan(
    consumer: AIOKafkaConsumer,
    admin: AIOKafkaAdminClient,
    selection: Selection,
    from_committed: bool,
) -> list[_Partition]:
    """Read the selected DLQ partitions up to their current ends: from their beginning, or from
    the replay group's commit (everything before it is handled)."""
    # Every topic's metadata: asking for the DLQs by name could auto-create a missing one.
    described = {t["topic"]: t for t in await admin.describe_topics() if not t["error_code"]}
    tps: list[TopicPartition] = []
    for topic in map(dlq, selection.topics):
        if topic not in described:
            raise DlqError(f"the broker has no topic {topic}: were the topics created?")
        partitions = sorted(p["partition"] for p in described[topic]["partitions"])
        tps += [TopicPartition(topic, partition) for partition in partitions]
    consumer.assign(tps)
    beginnings = await consumer.beginning_offsets(tps)
    ends = await consumer.end_offsets(tps)
    commits = await retry(
        lambda: admin.list_consumer_group_offsets(REPLAY_GROUP, partitions=tps),
        transient=COORDINATOR_TRANSIENT,
        attempts=8,
        what=f"reading the commits of {REPLAY_GROUP}",
    )
    progress = {tp: _Progress.parse(tp, commits.get(tp)) for tp in tps}
    starts = {
        tp: max(beginnings[tp], progress[tp].committed) if from_committed else beginnings[tp]
        for tp in tps
    }
    records = await _read(consumer, starts, ends)
    return [
        _Partition(tp, progress[tp], ends[tp], [_entry(r, progress[tp]) for r in records[tp]])
        for tp in tps
    ]


async def _read(
    consumer: AIOKafkaConsumer, starts: dict[TopicPartition, int], ends: dict[TopicPartition, int]
) -> dict[TopicPartition, list[Record]]:
    """The records of each partition from `starts` up to (not including) `ends`, in order."""
    records: dict[TopicPartition, list[Record]] = {tp: [] for tp in starts}
    pending = {tp for tp in starts if starts[tp] < ends[tp]}
    for tp, offset in starts.items():
        consumer.seek(tp, offset)
    loop = asyncio.get_running_loop()
    last_record = loop.time()
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=1000)
        for tp, got in batch.items():
            records[tp] += [record for record in got if record.offset < ends[tp]]
            last_record = loop.time()
        for tp in list(pending):
            if await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)
        if pending and loop.time() - last_record > STALL_S:
            raise DlqError(f"no record came for {STALL_S:.0f} s; is the broker still up?")
    return records


def _entry(record: Record, progress: _Progress) -> Entry:
    where = (record.topic, record.partition, record.offset)
    try:
        letter = DeadLetter.model_validate_json(record.value or b"")
        if dlq(letter.topic) != record.topic:
            raise ValueError(f"it names topic {letter.topic!r}, whose DLQ is not {record.topic}")
        original_value(letter)
    except ValueError as exc:  # pydantic's ValidationError and a bad base64 payload are ones
        written = datetime.fromtimestamp(record.timestamp / 1000, UTC)
        reason = describe_validation_error(exc)
        return Entry(*where, written, None, f"not a dead letter ragbus can replay: {reason}")
    return Entry(*where, letter.occurred_at, letter, replayed=progress.handled(record.offset))


async def _publish(kafka: Mapping[str, Any], letters: Sequence[tuple[str, DeadLetter]]) -> None:
    """Send each letter's original value back where it came from, with a header naming its
    DLQ position; return once all are acked.

    One producer sends them in DLQ order, so one partition's letters keep their order.
    """
    producer = AIOKafkaProducer(
        **kafka,
        client_id=CLIENT_ID,
        acks="all",
        enable_idempotence=True,
        max_request_size=MAX_MESSAGE_BYTES,
    )
    await producer.start()
    try:
        sent = [
            await producer.send(
                letter.topic,
                original_value(letter),
                key=letter.key.encode() if letter.key is not None else None,
                headers=[(REPLAYED_FROM, position.encode())],
            )
            for position, letter in letters
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def _ranges(offsets: Iterable[int]) -> str:
    """`{3, 4, 5, 9}` → `"3-5,9"`."""
    runs: list[list[int]] = []
    for offset in sorted(offsets):
        if runs and offset == runs[-1][1] + 1:
            runs[-1][1] = offset
        else:
            runs.append([offset, offset])
    return ",".join(str(first) if first == last else f"{first}-{last}" for first, last in runs)


def _offsets(ranges: str) -> frozenset[int]:
    """`"3-5,9"` → `{3, 4, 5, 9}`."""
    offsets: set[int] = set()
    for run in filter(None, ranges.split(",")):
        first, _, last = run.partition("-")
        offsets.update(range(int(first), int(last or first) + 1))
    return frozenset(offsets)


# --------------------------------------------------------------------------- the command


def add_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """The `dlq` subcommand: `list` and `replay`, with the same selection options."""
    parser = commands.add_parser("dlq", help="list dead letters; replay them after a fix")
    actions = parser.add_subparsers(dest="action", required=True)
    lister = actions.add_parser("list", help="show dead letters and whether they were replayed")
    replayer = actions.add_parser("replay", help="re-publish dead letters to their topics")
    for sub in (lister, replayer):
        sub.add_argument("--bootstrap", default=None, help="default: RAGBUS_KAFKA_BOOTSTRAP")
        sub.add_argument(
            "--topic", action="append", choices=CONSUMED, help="this topic's DLQ (repeatable)"
        )
        sub.add_argument("--document", default=None, help="only this document id")
        sub.add_argument("--tenant", default=None, help="only this tenant")
        sub.add_argument("--stage", default=None, choices=get_args(Stage))
    lister.add_argument("--limit", type=_positive, default=None, help="only the newest N")
    lister.add_argument("--json", action="store_true", help="JSON instead of a table")
    replayer.add_argument("--dry-run", action="store_true", help="show what would be replayed")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def run(args: argparse.Namespace, console: Console) -> int:
    """`ragbus dlq list|replay`: 0 when done, 1 with a message when it could not be."""
    selection = Selection(tuple(args.topic or CONSUMED), args.document, args.tenant, args.stage)
    kafka = operator_kafka(args.bootstrap)
    try:
        if args.action == "list":
            entries = asyncio.run(list_letters(kafka, selection))
            _show_list(console, entries, args.limit, args.json)
        else:
            result = asyncio.run(replay(kafka, selection, args.dry_run))
            _show_replay(console, result, args.dry_run)
    except DlqError as exc:
        console.print(f"[red]dlq {args.action} failed:[/] {escape(str(exc))}")
        return 1
    return 0


def _show_list(console: Console, entries: list[Entry], limit: int | None, as_json: bool) -> None:
    shown = entries[-limit:] if limit else entries
    if as_json:
        console.out(orjson.dumps([_json(entry) for entry in shown]).decode(), highlight=False)
        return
    replayed = sum(entry.replayed for entry in entries)
    console.print(
        f"dead letters: {len(entries)} ({replayed} replayed)"
        + (f"; the newest {len(shown)}:" if len(shown) < len(entries) else "")
    )
    if shown:
        console.print(_table(shown, replayed_column=True))


def _show_replay(console: Console, result: ReplayResult, dry_run: bool) -> None:
    replayed, passed = (
        ("would replay", "would pass over") if dry_run else ("replayed", "passed over")
    )
    console.print(f"{replayed}: {len(result.replayed)} dead letters")
    if result.replayed:
        console.print(_table(result.replayed, replayed_column=False))
    for entry in result.unreadable:
        console.print(f"[yellow]{passed}[/] {entry.position}: {escape(entry.problem or '')}")
    refused = "would refuse" if dry_run else "refused"
    for entry, reason in result.refused:
        console.print(f"[yellow]{refused}[/] {entry.position}: {escape(reason)}")


def _table(entries: list[Entry], replayed_column: bool) -> Table:
    columns = ["dead letter", "topic", "stage", "document", "tenant", "attempts", "error"]
    table = Table(*columns, "when (UTC)", *(["replayed"] if replayed_column else []))
    for entry in entries:
        state = "unreadable" if not entry.letter else "yes" if entry.replayed else "no"
        table.add_row(
            entry.position,
            *(escape(cell) for cell in _cells(entry)),
            entry.when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            *([state] if replayed_column else []),
        )
    return table


def _cells(entry: Entry) -> list[str]:
    """Topic, stage, document, tenant, attempts and error of an entry's letter."""
    letter = entry.letter
    if letter is None:
        return ["", "", "", "", "", entry.problem or ""]
    return [
        letter.topic,
        letter.stage,
        letter.document_id or "",
        letter.tenant_id or "",
        str(letter.attempts),
        letter.error,
    ]


def _json(entry: Entry) -> dict[str, Any]:
    return {
        "dlq_topic": entry.dlq_topic,
        "partition": entry.partition,
        "offset": entry.offset,
        "replayed": entry.replayed,
        "problem": entry.problem,
        "letter": entry.letter.model_dump(mode="json") if entry.letter else None,
    }
