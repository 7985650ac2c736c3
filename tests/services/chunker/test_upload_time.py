"""An upload's time is the broker's, not its producer's: a producer cannot pin its version ahead
of later uploads by writing a time in the future (version order follows the upload time)."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from contracts.events import DocumentUploaded, UploadOrDelete
from contracts.topics import DOCUMENT_UPLOADED
from services.chunker.subscriber import uploaded_when_appended
from tests.bus import kafka_options

FUTURE = datetime(2999, 1, 1, tzinfo=UTC)


@pytest.mark.integration
async def test_an_upload_dated_in_the_future_is_dated_when_the_broker_appended_it(kafka_broker):
    document_id = uuid.uuid4().hex
    event = DocumentUploaded(
        document_id=document_id,
        tenant_id="acme",
        blob_uri="file:///x",
        filename="x.txt",
        occurred_at=FUTURE,
    )
    producer = AIOKafkaProducer(**kafka_options(kafka_broker), acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait(
            DOCUMENT_UPLOADED, event.model_dump_json().encode(), key=document_id.encode()
        )
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(**kafka_options(kafka_broker), enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(DOCUMENT_UPLOADED, sent.partition)
        consumer.assign([tp])
        consumer.seek(tp, sent.offset)
        record = await consumer.getone(tp)
    finally:
        await consumer.stop()
    decoded: UploadOrDelete = DocumentUploaded.model_validate_json(record.value)

    stamped = uploaded_when_appended(record, decoded)

    assert abs(stamped.occurred_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert stamped.model_copy(update={"occurred_at": FUTURE}) == decoded
