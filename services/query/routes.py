"""`POST /v1/query`: dense retrieval over the serving alias, with numbered citations."""

import asyncio
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from contracts.events import Metadata
from ragbus.auth import Tenant
from ragbus.embedding.backend import EmbeddingBackend
from ragbus.store import StoreRunner

from .settings import QuerySettings
from .transform import Citation, citations_of, extractive_answer

router = APIRouter(prefix="/v1", tags=["query"])


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=4000)
    top_k: int = Field(default=5, ge=1)
    filters: Metadata = Field(default_factory=dict, description="exact matches on metadata")
    mode: Literal["dense"] = "dense"
    generate: bool = True


class QueryResponse(BaseModel):
    answer: str | None
    citations: list[Citation]
    timings_ms: dict[str, float]


def _state(request: Request) -> tuple[QuerySettings, StoreRunner, EmbeddingBackend]:
    state = request.app.state
    return state.settings, state.store, state.embedder


State = Annotated[tuple[QuerySettings, StoreRunner, EmbeddingBackend], Depends(_state)]


@router.post("/query", response_model=QueryResponse)
async def query(body: QueryRequest, tenant: Tenant, state: State) -> QueryResponse:
    """Retrieve the tenant's passages nearest the question; `generate: false` skips the answer."""
    settings, runner, embedder = state
    if body.top_k > settings.max_top_k:
        raise HTTPException(422, f"top_k must be at most {settings.max_top_k}")
    started = time.perf_counter()
    vector = (await asyncio.to_thread(embedder.embed, [body.question]))[0].tolist()
    embedded = time.perf_counter()
    hits = await runner.run(lambda: runner.store.search(vector, body.top_k, tenant, body.filters))
    searched = time.perf_counter()
    citations = citations_of(hits)
    return QueryResponse(
        answer=extractive_answer(citations) if body.generate else None,
        citations=citations,
        timings_ms={
            "embed": round((embedded - started) * 1000, 2),
            "search": round((searched - embedded) * 1000, 2),
            "total": round((time.perf_counter() - started) * 1000, 2),
        },
    )
