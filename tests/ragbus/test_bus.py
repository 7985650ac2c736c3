"""The poison-message guard: transient failures wait for redelivery, a poison record is
dead-lettered after its attempts, and a failed batch is retried record by record."""

import base64
import hashlib

import pytest
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import ConsumerRecord
from faststream.kafka import KafkaBroker

from contracts.topics import MAX_MESSAGE_BYTES
from ragbus import bus as bus_module
from ragbus.bus import Bus, Delivery, _payload

pytestmark = pytest.mark.unit


class Unavailable(RuntimeError):
    """A backend that is down for a while."""


class RecordingBus(Bus):
    def __init__(self) -> None:
        super().__init__(KafkaBroker("127.0.0.1:1"), "embedder", transient=(Unavailable,))
        self.letters: list[tuple[int, str, int]] = []

    async def dead_letter(self, record, reason, error_type, attempts=1, version=None):  # type: ignore[no-untyped-def]
        self.letters.append((record.offset, reason, attempts))


def record(offset: int) -> Delivery[None]:
    return Delivery(
        ConsumerRecord("chunks.ready", 0, offset, 0, 0, b"doc", b"{}", None, 3, 2, ()), None
    )


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch):
    monkeypatch.setattr(bus_module.random, "uniform", lambda low, high: 0.0)


async def test_a_transient_failure_is_redelivered_for_as_long_as_it_lasts():
    bus = RecordingBus()

    async def down(records):
        raise Unavailable("TEI is restarting")

    for _ in range(10):
        with pytest.raises(Unavailable):
            await bus.process([record(1)], down)
    with pytest.raises(KafkaConnectionError):

        async def broker_gone(records):
            raise KafkaConnectionError("no broker")

        await bus.process([record(1)], broker_gone)
    assert bus.letters == []


async def test_a_poison_record_is_dead_lettered_after_its_attempts():
    bus = RecordingBus()

    async def crash(records):
        raise KeyError("vector")

    for _ in range(bus.max_attempts - 1):
        with pytest.raises(KeyError):
            await bus.process([record(7)], crash)
    await bus.process([record(7)], crash)  # the last attempt: dead-lettered, not raised
    assert bus.letters == [(7, "KeyError: 'vector'", 3)]
    assert not bus.failed_before([record(7)])


async def test_a_failed_batch_is_retried_one_record_at_a_time_so_only_the_poison_is_dropped():
    bus = RecordingBus()
    handled: list[list[int]] = []

    async def poison_at_5(records):
        handled.append([r.record.offset for r in records])
        if any(r.record.offset == 5 for r in records):
            raise ValueError("bad chunk")

    batch = [record(4), record(5), record(6)]
    redeliveries = 0
    while True:
        try:
            await bus.process(batch, poison_at_5)
            break
        except ValueError:
            redeliveries += 1
            assert redeliveries < 10
    assert handled[0] == [4, 5, 6]  # the batch as a whole, once
    assert [4] in handled[1:] and [6] in handled[1:]  # then record by record
    assert bus.letters == [(5, "ValueError: bad chunk", 3)]


async def test_success_forgets_earlier_failures():
    bus = RecordingBus()
    calls = 0

    async def flaky(records):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("once")

    with pytest.raises(ValueError):
        await bus.process([record(9)], flaky)
    await bus.process([record(9)], flaky)
    assert not bus.failed_before([record(9)]) and bus.letters == []


@pytest.mark.parametrize(
    ("value", "encoding"), [(b'{"a": "\xc3\xa9"}', "utf-8"), (b"\xff\xfe\x00", "base64")]
)
def test_a_dead_letter_keeps_the_payload_byte_for_byte(value, encoding):
    kept = _payload(value)
    assert kept["payload_encoding"] == encoding
    restored = (
        kept["payload"].encode() if encoding == "utf-8" else base64.b64decode(kept["payload"])
    )
    assert restored == value


class CapturingBus(Bus):
    """A bus whose publishing is recorded instead of sent."""

    def __init__(self) -> None:
        super().__init__(KafkaBroker("127.0.0.1:1"), "chunker")
        self.sent: list[tuple[str, list]] = []

    async def publish(self, topic, events):  # type: ignore[no-untyped-def]
        self.sent.append((topic, list(events)))


def raw(key: bytes, value: bytes) -> ConsumerRecord:
    return ConsumerRecord("document.uploaded", 2, 40, 0, 0, key, value, None, 3, 2, ())


async def test_a_key_too_long_to_be_a_document_id_is_kept_but_names_no_document():
    bus = CapturingBus()
    await bus.dead_letter(
        raw(b"k" * 300, b'{"tenant_id": "t"}'), "invalid event", "ValidationError"
    )
    ((topic, (letter,)),) = bus.sent  # a letter, and no status update about a bogus document
    assert topic == "document.uploaded.dlq"
    assert len(letter.key) == 256 and letter.document_id is None


async def test_a_value_too_large_for_a_letter_keeps_its_beginning_size_and_digest():
    bus = CapturingBus()
    value = b"\xff" * (7 * 1024 * 1024)  # base64 would make it 9.3 MB
    await bus.dead_letter(raw(b"doc", value), "too big", "ValueError")
    (letter,) = bus.sent[0][1]
    assert letter.payload_truncated and letter.payload_bytes == len(value)
    assert letter.payload_sha256 == hashlib.sha256(value).hexdigest()
    assert len(letter.model_dump_json()) < MAX_MESSAGE_BYTES


async def test_the_same_record_dead_lettered_twice_is_the_same_letter():
    bus = CapturingBus()
    for _ in range(2):
        await bus.dead_letter(raw(b"doc", b"{}"), "invalid event", "ValidationError")
    assert bus.sent[0][1][0].event_id == bus.sent[-1][1][0].event_id


async def test_a_record_that_cannot_even_be_dead_lettered_is_skipped_not_looped():
    bus = RecordingBus()

    async def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ValueError("the letter itself is refused")

    bus.dead_letter = refuse  # type: ignore[method-assign]

    async def crash(records):
        raise KeyError("x")

    for _ in range(bus.max_attempts - 1):
        with pytest.raises(KeyError):
            await bus.process([record(3)], crash)
    await bus.process([record(3)], crash)  # logged at ERROR and skipped
    assert not bus.failed_before([record(3)])


async def test_a_failed_documents_owner_reads_no_internal_url_address_or_path():
    bus = CapturingBus()
    reason = (
        "could not reach http://10.0.0.5:8080/embed: timed out; qdrant.internal.svc:6333 refused;"
        " cannot open /var/lib/ragbus/blobs/acme/ab/cdef.pdf"
    )
    value = b'{"tenant_id": "acme", "document_id": "doc", "version": "v1"}'
    await bus.dead_letter(raw(b"doc", value), reason, "EmbeddingUnavailable")
    (_, (letter,)), (topic, (update,)) = bus.sent
    assert letter.error == reason  # operators read it whole
    assert topic == "document.status"
    for internal in ("10.0.0.5", "8080", "qdrant.internal", "6333", "/var/lib", "cdef.pdf"):
        assert internal not in update.reason
    assert update.reason.startswith("chunker: could not reach <url>: timed out")
