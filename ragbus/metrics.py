"""Prometheus metrics shared by every stage, labelled by stage, and the `/metrics` route."""

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

MESSAGES = Counter(
    "ragbus_messages_total", "Messages consumed, by outcome", ["stage", "topic", "outcome"]
)
CHUNKS = Counter("ragbus_chunks_total", "Chunks produced or processed", ["stage"])
DEAD_LETTERS = Counter("ragbus_dead_letters_total", "Messages sent to a DLQ", ["stage", "topic"])
BATCH_SIZE = Histogram(
    "ragbus_batch_size",
    "Items per processed batch",
    ["stage"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
STAGE_SECONDS = Histogram(
    "ragbus_stage_seconds",
    "Time to process one message or batch",
    ["stage"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
UPLOAD_TO_INDEXED = Histogram(
    "ragbus_upload_to_indexed_seconds",
    "End-to-end latency from upload to queryable",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)

HTTP_SECONDS = Histogram(
    "ragbus_http_request_seconds",
    "HTTP request latency by route and status",
    ["service", "method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# No tenant label: `/metrics` is open to whoever reaches the port, and tenant names are not.
RATE_LIMITED = Counter(
    "ragbus_rate_limited_total",
    "Requests answered 429 because the API key's rate limit was reached",
    ["service"],
)

QUERY_SECONDS = Histogram(
    "ragbus_query_seconds",
    "Query latency by step (embed, retrieve, rerank, first_token, generate, total)",
    ["step"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
QUERIES = Counter(
    "ragbus_queries_total", "Queries answered, by mode and outcome", ["mode", "outcome"]
)
LLM_TOKENS = Counter("ragbus_llm_tokens_total", "Text deltas streamed from the language model")
QUERY_CACHE = Counter(
    "ragbus_query_cache_total", "Answer cache lookups, by outcome (hit, miss)", ["outcome"]
)
QUERY_CACHE_DROPPED = Counter(
    "ragbus_query_cache_dropped_total", "Cached answers dropped because the index changed"
)
CONVERSATION_WRITES = Counter(
    "ragbus_conversation_writes_total",
    "Conversation records published by the query service, by outcome (ok, failed)",
    ["outcome"],
)

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


GENERATION_DOCUMENTS = Gauge(
    "ragbus_generation_documents",
    "Live documents of an index generation (a rebuild's progress beside the serving one's), "
    "as its last gate check or listing counted them",
    ["generation", "state"],
)
GENERATION_LAG = Gauge(
    "ragbus_generation_lag",
    "Records a rebuild's consumer groups have not committed, at its last gate check",
    ["generation"],
)
