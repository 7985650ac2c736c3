"""The language-model adapter: any OpenAI-compatible chat endpoint (vLLM, llama.cpp's server),
through the `openai` SDK.

Generation streams; a failure becomes an `LlmError` with a readable reason, never a hang: the
connection, the wait for each delta and the whole answer each have a deadline. Only failures
before the first delta are retried, so a client never sees a half answer twice.
"""

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import cast

import openai
from openai import AsyncOpenAI, AsyncStream, Timeout
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from ragbus.ports import ChatModel, LlmError, Message
from ragbus.retry import retry

# Worth another attempt: no connection or no reply in time, overloaded, or restarting.
TRANSIENT = (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)


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
        self._client = AsyncOpenAI(
            base_url=self.base_url,
            # The SDK refuses to start without a key (and would read OPENAI_API_KEY); a server
            # started without one ignores the header.
            api_key=api_key or "unused",
            timeout=Timeout(delta_timeout_s, connect=connect_timeout_s),
            max_retries=0,  # `_answer` retries, up to the first delta rather than the first byte
        )

    @property
    def name(self) -> str:
        return self._model or "default"

    async def _resolve_model(self) -> None:
        """Without a configured model name, use the first one the server lists."""
        try:
            listed = (await self._client.models.list()).data[0].id
        except Exception:  # unreachable or a malformed listing: the chat call that follows says why
            return
        self._model = listed or ""  # the SDK does not validate: a nameless entry gives None

    async def stream(
        self, messages: list[Message], *, max_tokens: int, temperature: float = 0.0
    ) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.total_timeout_s
        deltas = self._answer(messages, max_tokens, temperature)
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
                except (openai.OpenAIError, ValueError) as exc:
                    raise LlmError(_reason(exc, self.base_url)) from exc
                yield delta
        finally:
            await deltas.aclose()

    async def _answer(
        self, messages: list[Message], max_tokens: int, temperature: float
    ) -> AsyncGenerator[str, None]:
        """Deltas of the first attempt that starts answering; later failures are final."""
        if not self._model:
            await self._resolve_model()
        first, rest = await retry(
            lambda: self._started(messages, max_tokens, temperature),
            transient=TRANSIENT,
            attempts=self.retries + 1,
            base_delay=self.backoff_s,
            what=f"the language model at {self.base_url}",
        )
        async with aclosing(rest):
            if first is not None:
                yield first
            async for delta in rest:
                yield delta

    async def _started(
        self, messages: list[Message], max_tokens: int, temperature: float
    ) -> tuple[str | None, AsyncGenerator[str, None]]:
        """Open the stream and wait for its first delta (None: an empty answer). A failure ends
        the generator, so nothing is left open to retry from."""
        chunks = await self._client.chat.completions.create(
            model=self.name,
            # `Message` is the port's plain {role, content}; the SDK's type spells out each role.
            messages=cast(list[ChatCompletionMessageParam], messages),
            max_tokens=max_tokens,
            temperature=temperature,
            stream=True,
        )
        deltas = _texts(chunks)
        return await anext(deltas, None), deltas

    async def close(self) -> None:
        await self._client.close()


async def _texts(chunks: AsyncStream[ChatCompletionChunk]) -> AsyncGenerator[str, None]:
    """The text of each chunk; the SDK does not validate them, and servers leave fields out."""
    async with chunks:
        async for chunk in chunks:
            for choice in chunk.choices or ():
                if choice.delta and choice.delta.content:
                    yield choice.delta.content


def _reason(exc: openai.OpenAIError | ValueError, url: str) -> str:
    if isinstance(exc, ValueError):
        return f"the language model at {url} sent an event that is not JSON ({exc})"
    cause = exc.__cause__
    if isinstance(exc, openai.APITimeoutError):
        return f"the language model at {url} timed out ({type(cause).__name__})"
    if isinstance(exc, openai.APIConnectionError):
        return f"the language model at {url} is unreachable ({type(cause).__name__}: {cause})"
    if isinstance(exc, openai.RateLimitError | openai.InternalServerError):
        return f"the language model at {url} is unavailable (HTTP {exc.status_code})"
    if isinstance(exc, openai.APIStatusError):
        return f"the language model refused the request: {exc.response.text[:300]}"
    if isinstance(exc, openai.APIError):
        return f"the language model failed: {exc.body or exc.message}"
    return f"the language model at {url} failed: {exc}"


async def complete(model: ChatModel, messages: list[Message], *, max_tokens: int) -> str:
    """The whole answer at once (for short internal calls such as query rewriting)."""
    return "".join([delta async for delta in model.stream(messages, max_tokens=max_tokens)])
