import pytest

from contracts.topics import CONSUMED, DOCUMENT_STATUS, all_topics, dlq
from ragbus_ops.asyncapi import document

pytestmark = pytest.mark.integration


def test_the_asyncapi_document_covers_every_topic_and_event():
    spec = document()
    addresses = {channel["address"] for channel in spec["channels"].values()}
    assert addresses == {topic.name for topic in all_topics()}
    assert {dlq(topic) for topic in CONSUMED} <= addresses and DOCUMENT_STATUS in addresses
    schemas = spec["components"]["schemas"]
    assert {
        "DocumentUploaded",
        "ChunksReady",
        "VectorsReady",
        "IndexPromoted",
        "StatusUpdate",
        "DeadLetter",
    } <= set(schemas)
