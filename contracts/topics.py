"""Topic names and their broker-side configuration: the one place a topic is declared."""

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


def dlq(topic: str) -> str:
    """The dead-letter topic of the consumers of `topic`."""
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
    return specs
