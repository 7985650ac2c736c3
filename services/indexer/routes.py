"""`GET /v1/index`: what the serving alias points at, and how much of it is the caller's."""

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from ragbus.adapters.store import StoreRunner
from ragbus.auth import Tenant
from ragbus.service import app_state

router = APIRouter(prefix="/v1", tags=["index"])


class IndexView(BaseModel):
    alias: str
    collection: str
    generation: int
    points: int
    documents: int


Store = Annotated[StoreRunner, Depends(app_state("store"))]


@router.get("/index", response_model=IndexView)
async def index_info(tenant: Tenant, runner: Store) -> IndexView:
    """The serving alias, its collection generation, and how many of the points and documents
    it holds are the tenant's (other tenants' counts are theirs alone)."""
    info = await runner.run(lambda: runner.store.info(tenant))
    return IndexView(**info.__dict__)
