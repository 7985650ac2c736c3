"""`ragbus index status|rebuild|rollback|drop`: index generations, through the indexer's
operator routes (`/v1/index/generations`)."""

import argparse
import time
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ragbus_ops import client as api


def add_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = commands.add_parser("index", help="index generations: status, rebuild, rollback")
    actions = parser.add_subparsers(dest="action", required=True)
    status = actions.add_parser("status", help="every generation kept, and which one serves")
    rebuild = actions.add_parser(
        "rebuild", help="build a new generation from the log, then swap it in"
    )
    rebuild.add_argument("--model", default=None, help="embedding model (RAGBUS_EMBED_MODEL)")
    rebuild.add_argument("--chunk-tokens", type=int, default=None)
    rebuild.add_argument("--overlap", type=int, default=None)
    rebuild.add_argument(
        "--timeout", type=float, default=3600, help="seconds to wait for the gate to open"
    )
    rebuild.add_argument(
        "--accept-missing",
        action="store_true",
        help="swap although documents failed in the new generation (their reasons: ragbus dlq)",
    )
    rebuild.add_argument("--no-swap", action="store_true", help="build only; promote later")
    rollback = actions.add_parser("rollback", help="serve the generation that served before")
    drop = actions.add_parser("drop", help="drop a generation that does not serve")
    drop.add_argument("generation", type=int)
    for sub in (status, rebuild, rollback, drop):
        sub.add_argument("--indexer-url", default="http://127.0.0.1:8084")
        api.add_key_options(sub, "operator's bearer key")


def run(args: argparse.Namespace, console: Console) -> int:
    with httpx.Client(
        base_url=args.indexer_url.rstrip("/"), headers=api.headers(api.api_key(args)), timeout=600
    ) as http:
        if args.action == "status":
            return _status(http, console)
        if args.action == "rebuild":
            return _rebuild(http, args, console)
        if args.action == "rollback":
            return _answer(http.post("/v1/index/rollback"), console)
        return _answer(http.delete(f"/v1/index/generations/{args.generation}"), console)


def _answer(response: httpx.Response, console: Console) -> int:
    if response.status_code >= 400:
        console.print(f"[red]{response.status_code}[/] {response.text}")
        return 1
    if response.content:
        body = response.json()
        console.print(f"generation {body['generation']} serves (was {body['previous']})")
    return 0


def _status(http: httpx.Client, console: Console) -> int:
    response = http.get("/v1/index/generations")
    if response.status_code != 200:
        return _answer(response, console)
    table = Table(
        "generation", "state", "model", "chunk tokens", "overlap", "HNSW", "points", "documents"
    )
    for g in response.json():
        table.add_row(
            str(g["number"]),
            g["state"],
            g["model"] or g["embed_model"] or "",
            str(g["chunk_tokens"] or "default"),
            str(g["overlap"] if g["overlap"] is not None else "default"),
            "built" if g["indexed"] else "exact",
            str(g["points"]),
            str(g["documents"]),
        )
    console.print(table)
    return 0


def _rebuild(http: httpx.Client, args: argparse.Namespace, console: Console) -> int:
    body = {"embed_model": args.model, "chunk_tokens": args.chunk_tokens, "overlap": args.overlap}
    response = http.post("/v1/index/generations", json=body)
    if response.status_code != 201:
        return _answer(response, console)
    number = response.json()["number"]
    console.print(f"building generation {number}")
    gate = _wait_for_gate(http, number, args.timeout, args.accept_missing)
    if not gate["open"] and not (args.accept_missing and not gate["lag_left"]):
        console.print(f"[red]the gate did not open[/]: {'; '.join(gate['reasons'])}")
        return 1
    if args.no_swap:
        console.print(f"generation {number} is ready: promote it with the indexer's route")
        return 0
    params = {"accept_missing": str(args.accept_missing).lower()}
    return _answer(http.post(f"/v1/index/generations/{number}/promote", params=params), console)


def _wait_for_gate(
    http: httpx.Client, number: int, timeout: float, accept_missing: bool
) -> dict[str, Any]:
    """Poll the gate until it opens (or, accepting missing documents, the rebuild caught up),
    with the documents built so far as a progress bar."""
    deadline = time.monotonic() + timeout
    columns = (
        TextColumn(f"generation {number}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns) as progress:
        task = progress.add_task("", total=None)
        while True:
            gate: dict[str, Any] = http.get(f"/v1/index/generations/{number}/gate").json()
            gate["lag_left"] = sum(gate["lag"].values())
            built = gate["documents"] - len(gate["missing"])
            progress.update(
                task,
                total=gate["documents"],
                completed=built,
                description=f"lag {gate['lag_left']}, canaries "
                f"{gate['canaries_answered']}/{gate['canaries']}",
            )
            caught_up = accept_missing and not gate["lag_left"] and gate["canaries"]
            if gate["open"] or caught_up or time.monotonic() > deadline:
                return gate
            time.sleep(2)
