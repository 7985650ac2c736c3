"""`ragbus dlq list|replay` against a real broker of this module's own, which no stage consumes
from: a replayed letter stays where it was published (a running chunker would dead-letter it
again, as a new letter).

Each test writes letters of a tenant and documents of its own, selects by them, and reads back
only its own records.
"""

import asyncio
import base64
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from contracts.events import DeadLetter, DocumentDeleted, DocumentUploaded, Stage
from contracts.topics import CHUNKS_READY, DOCUMENT_UPLOADED, dlq
from deploy.kafka.launcher import free_ports
from ragbus_ops.cli import main
from ragbus_ops.dlq import (
    REPLAYED_FROM,
    DlqError,
    Entry,
    Selection,
    _Partition,
    _Progress,
    list_letters,
    replay,
)
from tests.bus import kafka_options

BINARY = b"\xff\xfe\x00 not utf-8 \x80"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def letter(
    topic: str, document_id: str, tenant_id: str, value: bytes, stage: Stage = "chunker"
) -> DeadLetter:
    """A letter as a stage writes it: the value as text when it is UTF-8, else as base64."""
    try:
        payload, encoding = value.decode(), "utf-8"
    except UnicodeDecodeError:
        payload, encoding = base64.b64encode(value).decode(), "base64"
    return DeadLetter(
        topic=topic,
        partition=3,
        offset=41,
        key=document_id,
        payload=payload,
        payload_encoding=encoding,
        error="ValueError: cannot parse",
        error_type="ValueError",
        stage=stage,
        attempts=3,
        document_id=document_id,
        tenant_id=tenant_id,
    )


def uploaded(document_id: str, tenant_id: str) -> bytes:
    event = DocumentUploaded(
        document_id=document_id, tenant_id=tenant_id, blob_uri="file:///x", filename="x.txt"
    )
    return event.model_dump_json().encode()


async def write(
    bootstrap: str, letters: list[DeadLetter | tuple[str, bytes]], partition: int | None = None
) -> list[str]:
    """Publish letters (or raw `(dlq topic, bytes)` records) to the DLQs; their positions."""
    producer = AIOKafkaProducer(**kafka_options(bootstrap), acks="all")
    await producer.start()
    try:
        positions = []
        for item in letters:
            if isinstance(item, DeadLetter):
                topic, value = dlq(item.topic), item.model_dump_json().encode()
                key = (item.document_id or "").encode()
            else:
                (topic, value), key = item, b"garbage"
            sent = await producer.send_and_wait(topic, value, key=key, partition=partition)
            positions.append(f"{topic}/{sent.partition}/{sent.offset}")
        return positions
    finally:
        await producer.stop()


async def ends(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    producer = AIOKafkaProducer(**kafka_options(bootstrap))
    consumer = AIOKafkaConsumer(**kafka_options(bootstrap))
    await producer.start()
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in await producer.partitions_for(topic)]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()
        await producer.stop()


async def published_since(
    bootstrap: str, since: dict[TopicPartition, int], keys: set[str]
) -> list["ConsumerRecord[bytes, bytes]"]:
    """The records keyed by one of `keys` written after `since`, up to the current ends."""
    consumer = AIOKafkaConsumer(**kafka_options(bootstrap), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(since))
        now = await consumer.end_offsets(list(since))
        for tp, offset in since.items():
            consumer.seek(tp, offset)
        found = []
        pending = {tp for tp in since if since[tp] < now[tp]}
        while pending:
            batch = await asyncio.wait_for(consumer.getmany(*pending, timeout_ms=1000), 30)
            for tp, records in batch.items():
                found += [r for r in records if r.offset < now[tp] and r.key.decode() in keys]
            pending = {tp for tp in pending if await consumer.position(tp) < now[tp]}
        return found
    finally:
        await consumer.stop()


def positions(entries: list[Entry]) -> dict[str, Entry]:
    return {entry.position: entry for entry in entries}


def entries(states: str) -> list[Entry]:
    """Entries at offsets 10, 11, …: `r` replayed, `p` pending, `u` unreadable."""
    some = letter(DOCUMENT_UPLOADED, "doc", "tenant", b"x")
    return [
        Entry("t.dlq", 0, 10 + i, some.occurred_at, None if s == "u" else some, replayed=s == "r")
        for i, s in enumerate(states)
    ]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("states", "replaying", "committed", "replayed"),
    [
        ("ppp", {10, 11, 12}, 13, set()),  # all replayed: the commit reaches the end
        ("ppp", {11}, 10, {11}),  # the first still pending holds the commit back
        ("rpr", {11}, 13, set()),  # the gap is filled: the commit moves past the listed ones
        ("upp", {11}, 12, set()),  # an unreadable record is passed over
        ("pup", {12}, 10, {12}),  # ... and not listed when past the first pending letter
        ("", set(), 13, set()),  # nothing read: the commit goes to the end
    ],
)
def test_the_commit_advances_only_over_handled_records(states, replaying, committed, replayed):
    partition = _Partition(TopicPartition("t.dlq", 0), _Progress(10), 13, entries(states))
    assert partition.advanced(replaying) == _Progress(committed, frozenset(replayed))


@pytest.mark.unit
def test_the_replay_record_round_trips_and_refuses_to_outgrow_the_broker_limit():
    tp = TopicPartition("t.dlq", 0)
    progress = _Progress(3, frozenset({5, 6, 7, 9, 12, 13}))
    assert progress.metadata(tp) == "replayed:5-7,9,12-13"
    assert _Progress.parse(tp, OffsetAndMetadata(3, progress.metadata(tp))) == progress
    with pytest.raises(DlqError, match="too many letters replayed"):
        _Progress(0, frozenset(range(2, 10_000, 2))).metadata(tp)


@pytest.mark.integration
async def test_list_shows_each_letter_and_narrows_by_document_stage_and_topic(idle_broker):
    tenant = unique("tenant")
    a, b, c = unique("doc"), unique("doc"), unique("doc")
    written = await write(
        idle_broker,
        [
            letter(DOCUMENT_UPLOADED, a, tenant, uploaded(a, tenant)),
            letter(CHUNKS_READY, b, tenant, b'{"chunks": []}', stage="embedder"),
            letter(DOCUMENT_UPLOADED, c, tenant, BINARY),
        ],
    )

    listed = await list_letters(kafka_options(idle_broker), Selection(tenant_id=tenant))

    assert [entry.position for entry in listed] == written  # oldest first
    first = listed[0]
    assert first.dlq_topic == dlq(DOCUMENT_UPLOADED) and not first.replayed
    assert first.letter is not None
    assert (first.letter.document_id, first.letter.stage, first.letter.attempts) == (
        a,
        "chunker",
        3,
    )
    assert listed[2].letter is not None and listed[2].letter.payload_encoding == "base64"
    by_document = await list_letters(kafka_options(idle_broker), Selection(document_id=b))
    by_stage = await list_letters(
        kafka_options(idle_broker), Selection(tenant_id=tenant, stage="embedder")
    )
    by_topic = await list_letters(
        kafka_options(idle_broker), Selection(topics=(DOCUMENT_UPLOADED,), tenant_id=tenant)
    )
    assert [entry.position for entry in by_document] == [written[1]]
    assert [entry.position for entry in by_stage] == [written[1]]
    assert [entry.position for entry in by_topic] == [written[0], written[2]]


@pytest.mark.integration
async def test_replay_restores_the_original_bytes_and_key_once(idle_broker):
    tenant = unique("tenant")
    text_doc, binary_doc = unique("doc"), unique("doc")
    original = {text_doc: uploaded(text_doc, tenant), binary_doc: BINARY}
    written = await write(
        idle_broker,
        [letter(DOCUMENT_UPLOADED, doc, tenant, value) for doc, value in original.items()],
    )
    selection = Selection(tenant_id=tenant)
    before = await ends(idle_broker, DOCUMENT_UPLOADED)

    dry = await replay(kafka_options(idle_broker), selection, dry_run=True)
    assert sorted(entry.position for entry in dry.replayed) == sorted(written)
    assert await published_since(idle_broker, before, set(original)) == []
    assert not any(
        entry.replayed for entry in await list_letters(kafka_options(idle_broker), selection)
    )

    done = await replay(kafka_options(idle_broker), selection)
    assert sorted(entry.position for entry in done.replayed) == sorted(written)
    records = await published_since(idle_broker, before, set(original))
    assert {r.key.decode(): r.value for r in records} == original
    assert sorted(dict(r.headers)[REPLAYED_FROM].decode() for r in records) == sorted(written)
    assert all(
        entry.replayed for entry in await list_letters(kafka_options(idle_broker), selection)
    )

    after = await ends(idle_broker, DOCUMENT_UPLOADED)
    again = await replay(kafka_options(idle_broker), selection)
    assert again.replayed == []
    assert await published_since(idle_broker, after, set(original)) == []


@pytest.mark.integration
async def test_a_filtered_replay_leaves_the_other_letters_replayable(idle_broker):
    tenant = unique("tenant")
    first, second = unique("doc"), unique("doc")
    # One partition, so the second letter is replayed past the first one, still pending.
    written = await write(
        idle_broker,
        [letter(CHUNKS_READY, doc, tenant, doc.encode(), "embedder") for doc in (first, second)],
        partition=0,
    )
    before = await ends(idle_broker, CHUNKS_READY)

    only_second = await replay(kafka_options(idle_broker), Selection(document_id=second))
    state = {
        e.position: e.replayed
        for e in await list_letters(kafka_options(idle_broker), Selection(tenant_id=tenant))
    }
    the_rest = await replay(kafka_options(idle_broker), Selection(tenant_id=tenant))
    nothing_left = await replay(kafka_options(idle_broker), Selection(tenant_id=tenant))

    assert [entry.position for entry in only_second.replayed] == [written[1]]
    assert state == {written[0]: False, written[1]: True}
    assert [entry.position for entry in the_rest.replayed] == [written[0]]
    assert nothing_left.replayed == []
    records = await published_since(idle_broker, before, {first, second})
    assert sorted(r.key.decode() for r in records) == sorted([first, second])


@pytest.mark.integration
async def test_a_record_that_is_no_letter_is_listed_and_passed_over(idle_broker):
    tenant = unique("tenant")
    doc = unique("doc")
    garbage, wrong_topic, good = await write(
        idle_broker,
        [
            (dlq(DOCUMENT_UPLOADED), b"not json at all"),
            (
                dlq(DOCUMENT_UPLOADED),
                letter(CHUNKS_READY, doc, tenant, b"x").model_dump_json().encode(),
            ),
            letter(DOCUMENT_UPLOADED, doc, tenant, b"y"),
        ],
        partition=0,
    )
    listed = positions(
        await list_letters(kafka_options(idle_broker), Selection(topics=(DOCUMENT_UPLOADED,)))
    )
    assert listed[garbage].letter is None and "not a dead letter" in (listed[garbage].problem or "")
    assert listed[wrong_topic].letter is None and "chunks.ready" in (
        listed[wrong_topic].problem or ""
    )
    assert garbage not in positions(
        await list_letters(kafka_options(idle_broker), Selection(tenant_id=tenant))
    )

    result = await replay(kafka_options(idle_broker), Selection(tenant_id=tenant))

    assert [entry.position for entry in result.replayed] == [good]
    assert {garbage, wrong_topic} <= {entry.position for entry in result.unreadable}


@pytest.mark.unit
async def test_an_unreachable_broker_is_a_clear_error():
    (port,) = free_ports(1)
    with pytest.raises(DlqError, match=f"cannot reach the Kafka broker at 127.0.0.1:{port}"):
        await list_letters(kafka_options(f"127.0.0.1:{port}"))


@pytest.mark.integration
def test_the_command_lists_and_replays(idle_broker, capsys):
    tenant, doc = unique("tenant"), unique("doc")
    (position,) = asyncio.run(
        write(idle_broker, [letter(DOCUMENT_UPLOADED, doc, tenant, uploaded(doc, tenant))])
    )
    select = ["--bootstrap", idle_broker, "--tenant", tenant]

    assert main(["dlq", "list", *select, "--json"]) == 0
    (listed,) = orjson.loads(capsys.readouterr().out)
    assert main(["dlq", "replay", *select, "--dry-run"]) == 0
    dry_run = capsys.readouterr().out
    assert main(["dlq", "replay", *select]) == 0
    replayed = capsys.readouterr().out
    assert main(["dlq", "list", *select]) == 0
    table = capsys.readouterr().out

    assert f"{listed['dlq_topic']}/{listed['partition']}/{listed['offset']}" == position
    assert listed["replayed"] is False and listed["letter"]["document_id"] == doc
    assert "would replay: 1 dead letters" in dry_run
    assert "replayed: 1 dead letters" in replayed
    assert "dead letters: 1 (1 replayed)" in table


@pytest.mark.unit
def test_the_command_fails_with_a_message_when_the_broker_is_unreachable(capsys):
    (port,) = free_ports(1)
    assert main(["dlq", "replay", "--bootstrap", f"127.0.0.1:{port}"]) == 1
    out = capsys.readouterr()
    assert "dlq replay failed: cannot reach the Kafka broker" in out.out
    assert "Traceback" not in out.out + out.err


@pytest.mark.integration
async def test_a_letter_of_a_document_deleted_since_is_refused_with_the_reason(idle_broker):
    tenant, gone, kept = unique("tenant"), unique("doc"), unique("doc")
    producer = AIOKafkaProducer(**kafka_options(idle_broker), acks="all")
    await producer.start()
    try:
        originals = {
            doc: await producer.send_and_wait(
                DOCUMENT_UPLOADED, uploaded(doc, tenant), key=doc.encode()
            )
            for doc in (gone, kept)
        }
        tombstone = DocumentDeleted(document_id=gone, tenant_id=tenant)
        await producer.send_and_wait(
            DOCUMENT_UPLOADED, tombstone.model_dump_json().encode(), key=gone.encode()
        )
    finally:
        await producer.stop()
    await write(
        idle_broker,
        [
            letter(DOCUMENT_UPLOADED, doc, tenant, uploaded(doc, tenant)).model_copy(
                update={"partition": sent.partition, "offset": sent.offset}
            )
            for doc, sent in originals.items()
        ],
    )
    selection = Selection(tenant_id=tenant)

    result = await replay(kafka_options(idle_broker), selection)

    assert [entry.letter.document_id for entry in result.replayed] == [kept]
    ((entry, reason),) = result.refused
    assert entry.letter.document_id == gone and "deleted after it" in reason
    again = await replay(kafka_options(idle_broker), selection)
    assert (again.replayed, again.refused) == ([], [])  # handled: never refused twice
