"""The query API's request, response and SSE event bodies."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

Mode = Literal["dense", "sparse", "hybrid"]
# Exact matches: a string, a 64-bit integer or a boolean (floats and null match nothing exactly).
FilterValue = StrictBool | Annotated[int, Field(strict=True, ge=-(2**63), le=2**63 - 1)] | StrictStr
# A question as retrieval takes it (a longer one is refused, or cut from a conversation).
QUESTION_CHARS = 4000
# No setting of `max_top_k` goes beyond this.
TOP_K_LIMIT = 1_000
TopK = Annotated[int, Field(ge=1, le=TOP_K_LIMIT)]
Filters = Annotated[
    dict[Annotated[str, Field(min_length=1, max_length=200)], FilterValue],
    Field(
        max_length=32, description="exact matches on metadata: strings, 64-bit integers, booleans"
    ),
]


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=QUESTION_CHARS)
    top_k: TopK = 5
    filters: Filters = Field(default_factory=dict)
    mode: Mode = "hybrid"
    rerank: bool | None = Field(
        default=None, description="null: rerank when a reranker (RERANK_URL) is configured"
    )
    generate: bool = Field(default=True, description="false: retrieval only, no answer")
    conversation_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="follow-ups are rewritten into standalone questions from this history",
    )


class Citation(BaseModel):
    n: int
    document_id: str
    chunk_id: str
    source: str
    score: float
    text: str
    generation: int | None = Field(default=None, description="the index generation it is from")


class RerankInfo(BaseModel):
    applied: bool
    reason: str | None = None


class Retrieval(BaseModel):
    """SSE `retrieval`: the passages the answer may cite, numbered as the model sees them."""

    generation: int = Field(description="the index generation searched")
    mode: Mode
    question: str = Field(description="the question retrieval used (rewritten for follow-ups)")
    rerank: RerankInfo
    passages: list[Citation]
    timings_ms: dict[str, float]


class Token(BaseModel):
    text: str


class Done(BaseModel):
    answer: str | None
    citations: list[Citation] = Field(description="the passages the answer cites")
    model: str | None
    cached: bool
    timings_ms: dict[str, float]


class Failure(BaseModel):
    """SSE `error`: what failed and where; the stream ends after it."""

    stage: str
    message: str


class QueryResponse(BaseModel):
    answer: str | None
    citations: list[Citation] = Field(description="every retrieved passage, numbered")
    cited: list[int] = Field(description="the numbers the answer cites")
    question: str
    generation: int = Field(description="the index generation searched")
    mode: Mode
    rerank: RerankInfo
    model: str | None
    cached: bool
    timings_ms: dict[str, float]
