"""The rerank adapter: a TEI-compatible `POST /rerank` (a cross-encoder scores query-passage
pairs). No cross-encoder ships in a PyPI package, so it runs only where `RERANK_URL` is set."""

from collections.abc import Sequence

import httpx

from ragbus.ports import RerankError


class TeiReranker:
    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.AsyncClient(timeout=timeout_s)

    async def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        try:
            response = await self._client.post(
                f"{self.url}/rerank", json={"query": query, "texts": list(texts), "truncate": True}
            )
            response.raise_for_status()
            ranked = response.json()
            by_index = {int(item["index"]): float(item["score"]) for item in ranked}
            return [by_index[i] for i in range(len(texts))]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise RerankError(f"the reranker at {self.url} failed: {exc}") from exc

    async def close(self) -> None:
        await self._client.aclose()
