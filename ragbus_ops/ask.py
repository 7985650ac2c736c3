"""`ragbus ask`: stream an answer from the query service and print its citations."""

import argparse
from collections.abc import AsyncIterator
from typing import Any

import httpx
from rich.console import Console

from ragbus_ops.client import api_key, headers, sse_events

EXCERPT_CHARS = 160


async def query_events(
    http: httpx.AsyncClient, query_url: str, body: dict[str, Any]
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """The `(event, data)` pairs of `POST /v1/query/stream`."""
    async with http.stream(
        "POST", f"{query_url}/v1/query/stream", json=body, timeout=httpx.Timeout(None, connect=5)
    ) as response:
        if response.status_code != 200:
            detail = (await response.aread()).decode(errors="replace")
            raise RuntimeError(f"query refused ({response.status_code}): {detail}")
        async for pair in sse_events(response):
            yield pair


def parse_filters(pairs: list[str]) -> dict[str, str]:
    filters = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--filter {pair!r} is not key=value")
        filters[key] = value
    return filters


async def ask(args: argparse.Namespace, console: Console) -> int:
    """Print tokens as they arrive, then the cited passages; 1 on an `error` event."""
    body: dict[str, Any] = {
        "question": args.question,
        "top_k": args.top_k,
        "mode": args.mode,
        "filters": parse_filters(args.filter),
    }
    if args.conversation:
        body["conversation_id"] = args.conversation
    cited: list[dict[str, Any]] = []
    async with httpx.AsyncClient(headers=headers(api_key(args))) as http:
        try:
            async for event, data in query_events(http, args.query_url.rstrip("/"), body):
                if event == "token":
                    console.print(data["text"], end="", markup=False, highlight=False)
                elif event == "citation":
                    cited.append(data)
                elif event == "error":
                    console.print(f"\n[red]{data['stage']} failed:[/] {data['message']}")
                    return 1
                elif event == "done":
                    console.print()
                    _sources(console, cited or data["citations"], data["timings_ms"])
        except (RuntimeError, httpx.HTTPError) as exc:
            console.print(f"[red]query failed:[/] {exc}")
            return 1
    return 0


def _sources(console: Console, cited: list[dict[str, Any]], timings: dict[str, float]) -> None:
    if cited:
        console.print("\n[bold]Sources[/]")
    for citation in sorted(cited, key=lambda c: c["n"]):
        text = " ".join(citation["text"].split())
        excerpt = text[:EXCERPT_CHARS] + ("…" if len(text) > EXCERPT_CHARS else "")
        console.print(f"[{citation['n']}] [cyan]{citation['source']}[/] ({citation['chunk_id']})")
        console.print(f"    {excerpt}", markup=False, highlight=False)
    spent = ", ".join(f"{step} {ms:.0f} ms" for step, ms in timings.items())
    console.print(f"[dim]{spent}[/]")
