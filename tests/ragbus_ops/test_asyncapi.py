from pathlib import Path

import orjson
import pytest

from contracts.topics import (
    CONSUMED,
    DOCUMENT_STATUS,
    TENANT_UPLOADS_SUBSCRIPTION,
    all_topics,
    dlq,
)
from ragbus_ops.asyncapi import document

pytestmark = pytest.mark.unit
COMMITTED = Path(__file__).parents[2] / "contracts" / "asyncapi.json"


def test_the_asyncapi_document_covers_every_topic_and_event():
    spec = document()
    addresses = {channel["address"] for channel in spec["channels"].values()}
    # Every topic, and the pattern of the tenants' upload topics.
    assert addresses == {topic.name for topic in all_topics()} | {TENANT_UPLOADS_SUBSCRIPTION}
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


def test_every_subscriber_declares_its_payload_and_the_committed_document_is_current():
    spec = document()
    schemas = spec["components"]["schemas"]
    for name, message in spec["components"]["messages"].items():
        ref = message["payload"]["$ref"].rsplit("/", 1)[-1]
        assert ref != "EmptyPayload" and ref in schemas, name
        payload = schemas[ref]
        if name.endswith("SubscribeMessage"):  # a batch of the topic's events
            assert payload["type"] == "array" and payload["items"], name
    committed = orjson.loads(COMMITTED.read_bytes())
    assert committed == orjson.loads(orjson.dumps(spec)), (
        "contracts/asyncapi.json is stale: run `make schemas`"
    )
