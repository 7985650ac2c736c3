"""The `ragbus` command: run the stack, upload documents with live progress, show status."""

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ragbus_ops import client as api
from ragbus_ops import dlq, index, tenants
from ragbus_ops.eval import console as evaluation


def _urls(args: argparse.Namespace) -> tuple[str, str]:
    return args.ingest_url.rstrip("/"), args.status_url.rstrip("/")


async def _ingest(args: argparse.Namespace, console: Console) -> int:
    files, skipped = api.collect_files(Path(p) for p in args.paths)
    for path in skipped:
        console.print(f"[yellow]skipped[/] {path} (unsupported type)")
    if not files:
        console.print("[red]nothing to upload[/]")
        return 1
    ingest_url, status_url = _urls(args)
    started = time.perf_counter()
    async with httpx.AsyncClient(headers=api.headers(api.api_key(args))) as http:
        if not args.wait:
            uploaded = 0
            try:
                async for accepted in api.upload(http, ingest_url, files, args.batch):
                    uploaded += len(accepted)
            except (RuntimeError, httpx.HTTPError) as exc:
                console.print(f"[red]upload failed:[/] {exc}")
                return 1
            console.print(f"uploaded {uploaded} documents")
            return 0
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[states]}"),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            uploading = bar.add_task("uploading", total=len(files), states="")
            indexing = bar.add_task("processing", total=len(files), states="")
            outcomes: Counter[str] = Counter()

            def finished(record: dict[str, Any]) -> None:
                outcomes[record["state"]] += 1
                states = "  ".join(f"{k.lower()} {v}" for k, v in sorted(outcomes.items()))
                bar.update(indexing, advance=1, states=states)

            try:
                progress_state = await api.upload_and_follow(
                    http,
                    ingest_url,
                    status_url,
                    files,
                    args.batch,
                    on_final=finished,
                    on_uploaded=lambda count: bar.update(uploading, advance=count),
                )
            except (RuntimeError, httpx.HTTPError) as exc:
                console.print(f"[red]upload failed:[/] {exc}")
                return 1
    return _summary(console, progress_state, time.perf_counter() - started)


def _summary(console: Console, progress: api.Progress, seconds: float) -> int:
    records = list(progress.final.values())
    unchanged = [r for r in records if r.get("unchanged")]
    records = [r for r in records if not r.get("unchanged")]
    indexed = [r for r in records if r["state"] == "INDEXED"]
    failed = [r for r in records if r["state"] == "FAILED"]
    chunks = sum(r.get("chunks") or 0 for r in indexed)
    console.print(
        f"{len(indexed)} indexed ({chunks} chunks), {len(failed)} failed, in {seconds:.1f} s"
        + (f" — {chunks / seconds:.1f} chunks/s" if seconds > 0 else "")
        + (f"; {len(unchanged)} unchanged (already indexed or on their way)" if unchanged else "")
    )
    for record in failed:
        console.print(f"  [red]FAILED[/] {record.get('filename')}: {record.get('reason')}")
    return 0 if not failed else 2


def _status(args: argparse.Namespace, console: Console) -> int:
    _, status_url = _urls(args)
    with httpx.Client(headers=api.headers(api.api_key(args)), timeout=10) as http:
        if args.document_id:
            response = http.get(f"{status_url}/v1/documents/{args.document_id}")
            if response.status_code != 200:
                console.print(f"[red]{response.status_code}[/] {response.text}")
                return 1
            console.print_json(response.text)
            return 0
        params: dict[str, str | int] = {"limit": args.limit}
        if args.state:
            params["state"] = args.state.upper()
        body = http.get(f"{status_url}/v1/documents", params=params).raise_for_status().json()
    counts = "  ".join(f"{state.lower()} {n}" for state, n in body["counts"].items() if n)
    console.print(counts or "no documents")
    table = Table("document", "file", "state", "chunks", "reason")
    for doc in body["documents"]:
        table.add_row(
            doc["document_id"][:8],
            doc["filename"] or "",
            doc["state"],
            str(doc["chunks"] or ""),
            doc["reason"] or "",
        )
    console.print(table)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ragbus", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the broker and every service (Ctrl-C stops them)")
    up.add_argument(
        "--no-llm",
        dest="llm",
        action="store_false",
        help="start no language model and pass no LLM_URL: answers are built from the passages",
    )
    commands.add_parser("down", help="stop a stack started by `ragbus up`")
    serve = commands.add_parser("serve", help="run one or more services in this process")
    serve.add_argument("services", nargs="+")

    def client_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--ingest-url", default="http://127.0.0.1:8081")
        sub.add_argument("--status-url", default="http://127.0.0.1:8083")
        api.add_key_options(sub)

    ingest = commands.add_parser("ingest", help="upload files and folders, showing progress")
    ingest.add_argument("paths", nargs="+")
    ingest.add_argument("--batch", type=int, default=25, help="files per upload request")
    ingest.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="return once uploaded, without following progress",
    )
    client_options(ingest)
    ask = commands.add_parser("ask", help="ask a question; stream the answer with citations")
    ask.add_argument("question")
    ask.add_argument("--top-k", type=int, default=5)
    ask.add_argument("--mode", choices=("dense", "sparse", "hybrid"), default="hybrid")
    ask.add_argument("--filter", action="append", default=[], help="metadata key=value")
    ask.add_argument("--conversation", default=None, help="conversation id for follow-ups")
    ask.add_argument("--query-url", default="http://127.0.0.1:8082")
    api.add_key_options(ask)
    status = commands.add_parser("status", help="document states")
    status.add_argument("document_id", nargs="?")
    status.add_argument("--state", default=None)
    status.add_argument("--limit", type=int, default=20)
    client_options(status)
    evaluation.add_parser(commands)
    dlq.add_parser(commands)
    index.add_parser(commands)
    tenants.add_parser(commands)
    model = commands.add_parser(
        "model", help="build the per-channel int8 embedding model into the cache and verify it"
    )
    model.add_argument("action", choices=["build"])
    model.add_argument(
        "--cache-dir", type=Path, default=None, help="default ~/.cache/ragbus/models"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(stderr=False)
    if args.command == "serve":
        from services.registry import main as serve

        serve(args.services)
        return 0
    if args.command in ("up", "down"):
        from ragbus_ops import supervisor

        settings = supervisor.StackSettings()
        if args.command == "up":
            return supervisor.up(settings, llm=args.llm)
        return supervisor.down(settings)
    if args.command == "ingest":
        return asyncio.run(_ingest(args, console))
    if args.command == "eval":
        return evaluation.run(args, console)
    if args.command == "dlq":
        return dlq.run(args, console)
    if args.command == "index":
        return index.run(args, console)
    if args.command == "tenants":
        return tenants.run(args, console)
    if args.command == "model":
        from ragbus.adapters.embedding import convert

        console.print(f"{convert.model_path(args.cache_dir)}  sha256 {convert.MODEL_SHA256}")
        return 0
    if args.command == "ask":
        from ragbus_ops.ask import ask

        return asyncio.run(ask(args, console))
    return _status(args, console)


if __name__ == "__main__":
    sys.exit(main())
