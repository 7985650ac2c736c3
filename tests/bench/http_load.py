"""A load of questions from a process of its own (so the client's own work stays off the
server's GIL): `python -m tests.bench.http_load <url> <key> <concurrency> < questions.json`
prints the queries/s and every latency (ms) as JSON.

aiohttp, not httpx: the client shares the machine's two cores with the server, and httpx's own
work per request showed in what was measured (one client at a time, p50 7.4 ms through httpx
against 6.0-6.9 through aiohttp for the same server-side 5.0-5.6 ms; at 16 clients, 163-190
queries/s against 221-223)."""

import asyncio
import json
import sys
import time

import aiohttp


async def load(url: str, key: str, concurrency: int, questions: list[str]) -> dict[str, object]:
    pending = list(reversed(questions))
    latencies: list[float] = []
    async with aiohttp.ClientSession(
        url,
        headers={"Authorization": f"Bearer {key}"},
        timeout=aiohttp.ClientTimeout(total=60),
        connector=aiohttp.TCPConnector(limit=concurrency),
    ) as http:

        async def worker() -> None:
            while pending:
                body = {"question": pending.pop(), "top_k": 5, "generate": False}
                started = time.perf_counter()
                async with http.post("/v1/query", json=body) as response:
                    response.raise_for_status()
                    await response.read()
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return {"qps": round(len(questions) / seconds, 1), "latencies_ms": latencies}


if __name__ == "__main__":
    url, key, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
    result = asyncio.run(load(url, key, concurrency, json.load(sys.stdin)))
    sys.stdout.write(json.dumps(result) + "\n")
