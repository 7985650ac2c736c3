"""The command line's side of the HTTP API: upload files and follow their progress."""

import argparse
import asyncio
import mimetypes
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from contracts.formats import SUPPORTED_EXTENSIONS

TERMINAL = {"INDEXED", "FAILED", "DELETED"}


@dataclass(frozen=True)
class LocalFile:
    path: Path
    name: str


def collect_files(paths: Iterable[Path]) -> tuple[list[LocalFile], list[Path]]:
    """Files to upload (folders walked, named relative to the folder's parent) and the
    files skipped for an unsupported type."""
    chosen, skipped = [], []
    for path in paths:
        candidates = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        root = path.parent
        for candidate in candidates:
            if candidate.suffix.lower() in SUPPORTED_EXTENSIONS:
                chosen.append(LocalFile(candidate, candidate.relative_to(root).as_posix()))
            else:
                skipped.append(candidate)
    return chosen, skipped


def add_key_options(parser: argparse.ArgumentParser, meaning: str = "bearer key") -> None:
    """How a command is given its API key: a file or `RAGBUS_API_KEY` (a key on the command line
    is seen by anyone who can list the machine's processes)."""
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument(
        "--api-key-file",
        type=Path,
        default=None,
        help=f"a file whose first line is the {meaning} (or set RAGBUS_API_KEY)",
    )
    keys.add_argument(
        "--api-key",
        default=None,
        help=f"the {meaning} itself: visible in `ps`, prefer RAGBUS_API_KEY or --api-key-file",
    )


def api_key(args: argparse.Namespace) -> str | None:
    """The key of `add_key_options`: given, read from its file, or from RAGBUS_API_KEY."""
    if args.api_key:
        return str(args.api_key)
    if args.api_key_file is not None:
        lines = args.api_key_file.read_text().splitlines()
        return lines[0].strip() if lines and lines[0].strip() else None
    return os.environ.get("RAGBUS_API_KEY") or None


def headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


async def upload(
    client: httpx.AsyncClient,
    ingest_url: str,
    files: list[LocalFile],
    batch_size: int,
    metadata: dict[str, Any] | None = None,
) -> AsyncIterator[list[dict[str, Any]]]:
    """Upload in batches; yield each batch's accepted documents. `metadata` (a JSON object)
    is applied to every file."""
    form = {"metadata": orjson.dumps(metadata).decode()} if metadata is not None else None
    for start in range(0, len(files), batch_size):
        batch = files[start : start + batch_size]
        parts = [
            (
                "files",
                (
                    f.name,
                    f.path.read_bytes(),
                    mimetypes.guess_type(f.name)[0] or "application/octet-stream",
                ),
            )
            for f in batch
        ]
        response = await client.post(
            f"{ingest_url}/v1/documents", files=parts, data=form, timeout=300
        )
        if response.status_code != 202:
            raise RuntimeError(f"upload refused ({response.status_code}): {_detail(response)}")
        yield response.json()["documents"]


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """The `(event, data)` pairs of a server-sent event stream whose data are JSON objects."""
    event = "message"
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            yield event, orjson.loads(line[5:])
            event = "message"


async def status_events(
    client: httpx.AsyncClient,
    status_url: str,
    document_id: str | None = None,
    connected: asyncio.Event | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """The status service's SSE `state` events, reconnecting when the stream drops;
    `connected` is set once the current states have been sent."""
    params = {"document_id": document_id} if document_id else {}
    while True:
        try:
            async with client.stream(
                "GET", f"{status_url}/v1/documents/stream", params=params, timeout=None
            ) as response:
                response.raise_for_status()
                async for event, data in sse_events(response):
                    if event == "state":
                        yield data
                    elif event == "ready" and connected:
                        connected.set()
        except (httpx.TransportError, httpx.HTTPStatusError):
            await asyncio.sleep(1.0)


@dataclass
class Progress:
    """Which uploaded documents reached a final state, counting only what followed the upload.
    It is done once the upload ended (`uploading` cleared) and every expected document is final.

    A document counts once a final state follows a state change seen on the stream; it may
    finish before the upload's answer names it, so such documents wait in `early`.
    """

    expected: dict[str, str] = field(default_factory=dict)  # document id -> filename
    uploading: bool = True  # more documents may still be expected
    moving: set[str] = field(default_factory=set)
    early: dict[str, dict[str, Any]] = field(default_factory=dict)
    final: dict[str, dict[str, Any]] = field(default_factory=dict)

    def expect(self, document_id: str, filename: str) -> dict[str, Any] | None:
        """Add an uploaded document; return its final record if it already finished."""
        self.expected[document_id] = filename
        record = self.early.pop(document_id, None)
        if record is not None:
            self.final[document_id] = record
        return record

    def unchanged(self, accepted: dict[str, Any]) -> dict[str, Any]:
        """Add a document the upload found unchanged: it is final as it stands, and no state
        change will follow."""
        document_id = accepted["document_id"]
        self.expected[document_id] = accepted["filename"]
        record = {**accepted, "state": accepted["status"]}
        self.final[document_id] = record
        return record

    def observe(self, record: dict[str, Any]) -> bool:
        """Take one state record; True when it finished one of the expected documents."""
        document_id = record["document_id"]
        if record["state"] not in TERMINAL:
            self.moving.add(document_id)
            return False
        if document_id not in self.moving or document_id in self.final:
            return False
        if document_id not in self.expected:
            self.early[document_id] = record
            return False
        self.final[document_id] = record
        return True

    @property
    def done(self) -> bool:
        return not self.uploading and len(self.final) == len(self.expected)


async def follow(
    client: httpx.AsyncClient,
    status_url: str,
    progress: Progress,
    on_final: Callable[[dict[str, Any]], None],
    connected: asyncio.Event,
) -> None:
    async for record in status_events(client, status_url, connected=connected):
        if progress.observe(record):
            on_final(record)
        if progress.expected and progress.done:
            return


async def upload_and_follow(
    client: httpx.AsyncClient,
    ingest_url: str,
    status_url: str,
    files: list[LocalFile],
    batch_size: int,
    *,
    metadata: dict[str, Any] | None = None,
    on_final: Callable[[dict[str, Any]], None] = lambda record: None,
    on_uploaded: Callable[[int], None] = lambda count: None,
    stall_s: float | None = None,
) -> Progress:
    """Upload `files` while following the status stream, until every upload is final; or,
    with `stall_s`, until no upload has finished for that long (the rest stay unfinished in
    the returned progress). An unchanged upload is final at once: no state change follows it.

    The stream is connected before the first upload, so no state change is missed.
    """
    progress = Progress()
    connected = asyncio.Event()
    follower = asyncio.create_task(follow(client, status_url, progress, on_final, connected))
    try:
        try:
            await asyncio.wait_for(connected.wait(), timeout=30)
        except TimeoutError as exc:
            raise RuntimeError(f"no status stream at {status_url}") from exc
        async for accepted in upload(client, ingest_url, files, batch_size, metadata):
            for row in accepted:
                if row.get("unchanged"):
                    on_final(progress.unchanged(row))
                    continue
                early = progress.expect(row["document_id"], row["filename"])
                if early is not None:
                    on_final(early)
            on_uploaded(len(accepted))
        progress.uploading = False
        await _until_done(progress, follower, stall_s)
    finally:
        follower.cancel()
    return progress


async def _until_done(
    progress: Progress, follower: asyncio.Task[None], stall_s: float | None
) -> None:
    seen, since = len(progress.final), time.monotonic()
    while not progress.done and not follower.done():
        await asyncio.wait({follower}, timeout=1.0)
        if len(progress.final) != seen:
            seen, since = len(progress.final), time.monotonic()
        elif stall_s is not None and time.monotonic() - since > stall_s:
            return
    if follower.done():
        follower.result()  # the stream's own failure, if it had one
