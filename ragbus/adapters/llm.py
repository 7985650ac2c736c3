"""The language-model adapter: any OpenAI-compatible chat endpoint (vLLM, llama.cpp's server).

Generation streams; a failure becomes an `LlmError` with a readable reason, never a hang: the
connection, the wait for each delta and the whole answer each have a deadline. Only failures
before the first delta are retried, so a client never sees a half answer twice.
"""

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

import httpx
import orjson

from ragbus.ports import ChatModel, LlmError, Message

RETRYABLE_STATUS = {429, 500, 502, 503, 504}


class OpenAiChat:
    """`ChatModel` over `POST {base_url}/chat/completions` with `stream: true`."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        connect_timeout_s: float = 5.0,
        delta_timeout_s: float = 30.0,
        total_timeout_s: float = 120.0,
        retries: int = 2,
        backoff_s: float = 0.5,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._model = model
        self.total_timeout_s = total_timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(delta_timeout_s, connect=connect_timeout_s),
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
        )

    @property
    def name(self) -> str:
        return self._model or "default"

    async def _resolve_model(self) -> None:
        """Without a configured model name, use the first one the server lists."""
        try:
            response = await self._client.get(f"{self.base_url}/models")
            response.raise_for_status()
            self._model = str(response.json()["data"][0]["id"])
        except (httpx.TransportError, httpx.HTTPStatusError, ValueError, KeyError, IndexError):
            return  # the chat call that follows reports the failure with its reason

    async def stream(
        self, messages: list[Message], *, max_tokens: int, temperature: float = 0.0
    ) -> AsyncIterator[str]:
        body = {
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
        }
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.total_timeout_s
        deltas = self._attempts(body)
        try:
            while True:
                try:
                    delta = await asyncio.wait_for(anext(deltas), deadline - loop.time())
                except StopAsyncIteration:
                    return
                except TimeoutError as exc:
                    raise LlmError(
                        f"the language model at {self.base_url} did not finish within "
                        f"{self.total_timeout_s:g} s"
                    ) from exc
                yield delta
        finally:
            await deltas.aclose()

    async def _attempts(self, body: dict[str, object]) -> AsyncGenerator[str, None]:
        """Deltas of the first attempt that starts answering; later failures are final."""
        if not self._model:
            await self._resolve_model()
        body["model"] = self.name
        for attempt in range(self.retries + 1):
            started = False
            try:
                async for delta in self._deltas(body):
                    started = True
                    yield delta
                return
            except (httpx.TransportError, _Retryable) as exc:
                if started or attempt == self.retries:
                    raise LlmError(_reason(exc, self.base_url)) from exc
            await asyncio.sleep(self.backoff_s * 2**attempt)

    async def _deltas(self, body: dict[str, object]) -> AsyncIterator[str]:
        async with self._client.stream(
            "POST", f"{self.base_url}/chat/completions", json=body
        ) as response:
            if response.status_code in RETRYABLE_STATUS:
                raise _Retryable(f"HTTP {response.status_code}")
            if response.status_code != 200:
                detail = (await response.aread()).decode(errors="replace")[:300]
                raise LlmError(f"the language model refused the request: {detail}")
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                chunk = orjson.loads(data)
                if "error" in chunk:
                    raise LlmError(f"the language model failed: {chunk['error']}")
                for choice in chunk.get("choices", []):
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield text

    async def close(self) -> None:
        await self._client.aclose()


class _Retryable(Exception):
    """A transient answer from the server (overloaded, restarting)."""


def _reason(exc: Exception, url: str) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"the language model at {url} timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.TransportError):
        return f"the language model at {url} is unreachable ({type(exc).__name__}: {exc})"
    return f"the language model at {url} is unavailable ({exc})"


async def complete(model: ChatModel, messages: list[Message], *, max_tokens: int) -> str:
    """The whole answer at once (for short internal calls such as query rewriting)."""
    return "".join([delta async for delta in model.stream(messages, max_tokens=max_tokens)])
