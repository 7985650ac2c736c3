"""Query service settings."""

from functools import cache

from pydantic import AliasChoices, Field

from ragbus.settings import EmbeddingSettings, LlmSettings, ServiceSettings, StoreSettings

from .models import TOP_K_LIMIT


class QuerySettings(ServiceSettings, StoreSettings, EmbeddingSettings, LlmSettings):
    """The broker, the HTTP shell, the vector store, the embedding model (for questions),
    the language model and reranker; and how it answers."""

    port: int = Field(default=8082, validation_alias=AliasChoices("RAGBUS_QUERY_PORT"))
    max_top_k: int = Field(default=50, ge=1, le=TOP_K_LIMIT)
    context_passages: int = Field(
        default=4,
        ge=1,
        description="most passages put in the prompt: each costs the model time before the first "
        "token (about 2 s per 256-token passage for the local model on 2 cores)",
    )
    rerank_candidates: int = Field(default=30, ge=1, description="fused hits sent to the reranker")
    llm_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("LLM_API_KEY", "RAGBUS_LLM_API_KEY")
    )
    llm_max_tokens: int = Field(default=384, ge=16)
    llm_connect_timeout_s: float = Field(default=5.0, gt=0)
    llm_delta_timeout_s: float = Field(default=30.0, gt=0, description="longest wait for a token")
    llm_total_timeout_s: float = Field(default=120.0, gt=0)
    llm_retries: int = Field(default=2, ge=0)
    rewrite_max_tokens: int = Field(default=64, ge=8)
    history_turns: int = Field(default=6, ge=1, description="turns kept per conversation")
    replay_timeout_s: float = Field(
        default=60.0, gt=0, description="longest wait at start for the conversations to reload"
    )
    cache_entries: int = Field(default=2048, ge=0, description="answers cached; 0 disables")
    cache_ttl_s: float = Field(default=3600.0, gt=0)


@cache
def get_settings() -> QuerySettings:
    return QuerySettings()
