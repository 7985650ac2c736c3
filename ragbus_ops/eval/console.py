"""`ragbus eval` on a terminal: live progress with rates and ETAs, then the results table."""

import argparse
import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from ragbus_ops import client as api

from .datasets import Dataset, load_beir, load_squad
from .runner import MODES, Endpoints, Options, QueryRefused, evaluate, stack_for, write_report

METRICS = {
    "recall@1": "R@1",
    "recall@5": "R@5",
    "recall@10": "R@10",
    "mrr": "MRR",
    "ndcg@10": "nDCG@10",
}


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.1f}/s" if task.speed else "", style="cyan")


class RichReporter:
    """Progress bars per task (upload, index, each mode, answers) on a shared console."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description:<14}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[note]}"),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {}

    def say(self, message: str) -> None:
        self.console.print(message)

    def begin(self, task: str, total: int) -> None:
        self.tasks[task] = self.progress.add_task(task, total=total, note="")

    def advance(self, task: str, done: int = 1, note: str = "") -> None:
        self.progress.update(self.tasks[task], advance=done, note=note)


def results_table(report: dict[str, Any]) -> Table:
    """A row of metrics per mode; skipped modes are listed under it (`skipped_lines`)."""
    table = Table(
        title=f"{report['dataset']}: {report['documents']} documents "
        f"({report['documents_failed']} failed), {report['queries']} questions, top "
        f"{report['top_k']}"
    )
    table.add_column("mode", no_wrap=True)
    for header in [*METRICS.values(), "p50 ms", "p95 ms", "q/s", "errors"]:
        table.add_column(header, justify="right")
    for mode, scores in report["modes"].items():
        latency = scores["latency_ms"] or {}
        table.add_row(
            mode,
            *(f"{scores[m]:.3f}" if m in scores else "—" for m in METRICS),
            f"{latency.get('p50', 0):.0f}",
            f"{latency.get('p95', 0):.0f}",
            f"{scores['questions_per_s']:.1f}",
            str(scores["errors"]),
        )
    return table


def skipped_lines(report: dict[str, Any]) -> list[str]:
    return [f"{mode}: [yellow]skipped[/] — {why}" for mode, why in report["skipped"].items()]


def error_lines(report: dict[str, Any]) -> list[str]:
    """A few of each part's distinct errors (all of them are counted in the report)."""
    parts = {**report["modes"], "answers": report["answers"]}
    return [
        f"  [red]{part} error[/] {message}"
        for part, outcome in parts.items()
        for message in outcome.get("error_samples", [])
    ]


def answers_line(answers: dict[str, Any]) -> str:
    if "skipped" in answers:
        return f"answers: skipped — {answers['skipped']}"

    def timing(name: str) -> str:
        values = answers[name]
        return f"{values['p50']:.0f}/{values['p95']:.0f} ms" if values else "—"

    return (
        f"answers ({answers['questions']} questions, {answers['mode']}, {answers['model']}): "
        f"EM {answers['exact_match']:.3f}  F1 {answers['f1']:.3f}  errors {answers['errors']}  "
        f"first token p50/p95 {timing('first_token_ms')}  total {timing('total_ms')}"
    )


def _endpoints(args: argparse.Namespace) -> Endpoints:
    """The URLs given, else the services' configured ports on loopback."""
    from services.registry import port_of

    return Endpoints(
        *(
            (getattr(args, f"{name}_url") or f"http://127.0.0.1:{port_of(name)}").rstrip("/")
            for name in ("ingest", "query", "status")
        )
    )


def _load(args: argparse.Namespace) -> Dataset:
    path = Path(args.path)
    return load_squad(path) if args.kind == "squad" else load_beir(path)


def run(args: argparse.Namespace, console: Console) -> int:
    """`ragbus eval squad|beir PATH --out FILE`."""
    modes = tuple(mode.strip() for mode in args.modes.split(",") if mode.strip())
    unknown = set(modes) - set(MODES)
    if unknown or not modes:
        console.print(f"[red]unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}[/]")
        return 2
    dataset = _load(args)
    options = Options(
        modes=modes,
        top_k=args.top_k,
        questions=args.questions,
        answers=args.answers,
        concurrency=args.concurrency,
        api_key=api.api_key(args),
    )
    console.print(
        f"{dataset.name}: {len(dataset.documents)} documents, {len(dataset.questions)} questions"
        + "".join(f"; {note}" for note in dataset.notes)
    )
    reporter = RichReporter(console)
    try:
        with (
            stack_for(
                _endpoints(args),
                Path(args.data_dir),
                args.answers > 0,
                console.print,
                api.api_key(args),
            ) as endpoints,
            reporter.progress,
        ):
            report = asyncio.run(evaluate(dataset, endpoints, options, reporter))
    except (RuntimeError, ValueError, QueryRefused, httpx.HTTPError) as exc:
        console.print(f"[red]evaluation failed:[/] {exc}")
        return 1
    write_report(report, Path(args.out))
    console.print(results_table(report))
    for line in skipped_lines(report):
        console.print(line)
    console.print(answers_line(report["answers"]))
    for line in error_lines(report):
        console.print(line)
    for failure in report["failures"][:10]:
        console.print(f"  [red]FAILED[/] {failure['filename']}: {failure['reason']}")
    console.print(f"report written to {args.out} ({report['elapsed_s']} s)")
    return 0


def _count(least: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}")
        return value

    return parse


def add_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """The `eval` subcommand and its options."""
    parser = commands.add_parser("eval", help="retrieval and answer quality on SQuAD or BEIR")
    kinds = parser.add_subparsers(dest="kind", required=True)
    for kind, what in (("squad", "a SQuAD v1.1 JSON file"), ("beir", "a BEIR folder")):
        sub = kinds.add_parser(kind, help=f"evaluate on {what}")
        sub.add_argument("path", help=what)
        sub.add_argument("--out", required=True, help="where to write the JSON report")
        sub.add_argument("--questions", type=_count(1), default=None, help="a seeded sample of N")
        sub.add_argument("--answers", type=_count(0), default=200, help="answers to generate")
        sub.add_argument("--modes", default=",".join(MODES))
        sub.add_argument("--top-k", type=int, default=10, choices=range(1, 51), metavar="1..50")
        sub.add_argument("--concurrency", type=_count(1), default=4, help="questions in flight")
        api.add_key_options(sub)
        for service in ("ingest", "query", "status"):
            sub.add_argument(f"--{service}-url", default=None, help="default: configured port")
        sub.add_argument(
            "--data-dir", default="var/eval", help="data dir of a stack started for the run"
        )
