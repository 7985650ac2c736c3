"""Topic names and their broker-side configuration: the one place a topic is declared."""

import re
from dataclasses import dataclass, field

DOCUMENT_UPLOADED = "document.uploaded"
CHUNKS_READY = "chunks.ready"
VECTORS_READY = "vectors.ready"
INDEX_PROMOTED = "index.promoted"
DOCUMENT_STATUS = "document.status"
# The index generations and what each is built with (`events.GenerationPlan`, key: generation),
# written by the indexer, followed by every chunker.
INDEX_GENERATIONS = "index.generations"
# The query service's conversation history (key: `events.conversation_key`), written and read
# by the query service alone.
QUERY_CONVERSATIONS = "query.conversations"

DEFAULT_PARTITIONS = 12

# Each stage's consumer group (generation 1's, for the chunker: `events.GenerationPlan`); what
# KEDA scales on, and what a rebuild's gate reads the lag of.
CONSUMER_GROUPS = {
    "chunker": "ragbus-chunker",
    "embedder": "ragbus-embedder",
    "indexer": "ragbus-indexer",
}


# Outside producers publish onto their tenant's own topic, `tenant.<tenant>.uploads`, which only
# that tenant's principal may write (and the ingest service's gateway reads): the tenant of an
# event is the topic it came in, never a field its producer wrote.
TENANT_TOPIC_PREFIX = "tenant."
TENANT_UPLOADS_PATTERN = r"tenant\.[a-z0-9][a-z0-9_-]{0,62}\.uploads"
TENANT_UPLOADS_DLQ = "tenant.uploads.dlq"
# What the gateway subscribes to (FastStream's pattern syntax takes no braces): every name
# `TENANT_UPLOADS_PATTERN` matches, and a few it checks and refuses.
TENANT_UPLOADS_SUBSCRIPTION = r"^tenant\.[a-z0-9][a-z0-9_-]*\.uploads$"
# The ingest service's consumer group of every tenant's upload topic.
GATEWAY_GROUP = "ragbus-ingest-gateway"
_TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def tenant_uploads(tenant_id: str) -> str:
    """The upload topic of `tenant_id`; a ValueError for a tenant id no topic name can carry."""
    if not _TENANT_NAME.fullmatch(tenant_id):
        raise ValueError(
            f"tenant id {tenant_id[:80]!r} cannot name an upload topic: use 1-63 lowercase "
            "letters, digits, '-' or '_', starting with a letter or digit"
        )
    return f"{TENANT_TOPIC_PREFIX}{tenant_id}.uploads"


def tenant_of_topic(topic: str) -> str | None:
    """The tenant whose upload topic `topic` is, or None."""
    match = re.fullmatch(TENANT_UPLOADS_PATTERN, topic)
    return topic.split(".")[1] if match else None


def dlq(topic: str) -> str:
    """The dead-letter topic of the consumers of `topic` (one for every tenant's upload topic,
    read by operators only)."""
    if tenant_of_topic(topic) is not None:
        return TENANT_UPLOADS_DLQ
    return f"{topic}.dlq"


@dataclass(frozen=True)
class TopicSpec:
    """A topic as the bootstrap creates it."""

    name: str
    partitions: int = DEFAULT_PARTITIONS
    configs: dict[str, str] = field(default_factory=dict)


# Topics that a stage consumes; each gets a dead-letter topic of its own. (The query service
# also reads `index.promoted` and `query.conversations`, in every replica without a group: a bad
# record there is logged and counted, since a DLQ would get one copy of it per replica.)
CONSUMED = (DOCUMENT_UPLOADED, CHUNKS_READY, VECTORS_READY, DOCUMENT_STATUS)

# Large enough for a batch of chunk texts or packed vectors, small enough to stay a message.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

# A conversation idle this long is over: compaction keeps each conversation's latest record,
# deletion drops the ones whose latest record is older than this.
CONVERSATION_RETENTION_MS = 7 * 24 * 3600 * 1000


def all_topics(partitions: int = DEFAULT_PARTITIONS) -> list[TopicSpec]:
    """Every topic ragbus uses, with its partitions and configs.

    `document.uploaded` is the corpus: compacted by document id, it keeps each document's latest
    upload or its deletion (a `DocumentDeleted` record, never a null), so replaying it from the
    start rebuilds an index of exactly the current documents. `document.status` is the state of
    every document, compacted the same way. Records stay uncompacted for a minute, so a stage
    that is behind still sees the versions in between.
    """
    size = {"max.message.bytes": str(MAX_MESSAGE_BYTES)}
    compacted = {**size, "cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}
    # The broker stamps each upload with its own clock as it appends it: the chunker takes that
    # time as the upload's, so version order never follows a producer's clock.
    appended = {"message.timestamp.type": "LogAppendTime"}
    specs = [
        TopicSpec(DOCUMENT_UPLOADED, partitions, {**compacted, **appended}),
        TopicSpec(CHUNKS_READY, partitions, size),
        TopicSpec(VECTORS_READY, partitions, size),
        TopicSpec(INDEX_PROMOTED, partitions, size),
        TopicSpec(DOCUMENT_STATUS, partitions, compacted),
        # One partition: a handful of records, read whole by every chunker, in order.
        TopicSpec(INDEX_GENERATIONS, 1, {**size, "cleanup.policy": "compact"}),
        TopicSpec(
            QUERY_CONVERSATIONS,
            partitions,
            {
                **size,
                "cleanup.policy": "compact,delete",
                "retention.ms": str(CONVERSATION_RETENTION_MS),
            },
        ),
    ]
    specs += [TopicSpec(dlq(topic), partitions, size) for topic in CONSUMED]
    specs.append(TopicSpec(TENANT_UPLOADS_DLQ, partitions, size))
    return specs


def tenant_topic(tenant_id: str, partitions: int = DEFAULT_PARTITIONS) -> TopicSpec:
    """A tenant's upload topic, as `ragbus tenants add` creates it."""
    return TopicSpec(
        tenant_uploads(tenant_id), partitions, {"max.message.bytes": str(MAX_MESSAGE_BYTES)}
    )
