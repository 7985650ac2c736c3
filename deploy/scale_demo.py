"""`make scale-demo`: a burst of documents through a ragbus whose chunker and embedder are scaled
by the local autoscaler (`deploy/autoscaler.py`) on their real consumer groups' lag.

It starts a broker and the services of its own (in `var/scale-demo`, on free ports), uploads
bursts of SQuAD dev paragraphs, and ticks the autoscaler until every document is indexed and
both stages are back at their minimum. Then it stops the indexer and reads every point from the
store: each document's expected point ids follow from its id, version and chunk count (the
status service's), so a lost or a duplicated point shows. It writes
`reports/scale-demo.csv` (`t, group, partitions, lag, desired, replicas` per tick and group),
`reports/scale-demo.png` (lag and replicas over time) and `reports/scale-demo.json` (the
outcome), checks that the replicas followed the rule at every tick, and exits 1 if anything
failed.

The indexer stays one process: embedded Qdrant admits a single opener (with `QDRANT_URL` it
could scale like the others). The demo's thresholds are small so that a burst a 2-core machine
digests in minutes still moves the replica counts; the cluster's are in deploy/k8s.
"""

import argparse
import asyncio
import csv
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from contracts.ids import chunk_id
from contracts.topics import CHUNKS_READY, DOCUMENT_UPLOADED, all_topics
from deploy.autoscaler import ReplicaPool, Scaled, ScaleRule, Tick, follows_the_rule
from deploy.kafka.launcher import LocalKafka, bootstrap_topics_blocking, fetch_broker, free_ports
from ragbus.adapters.edge_store import stored_points
from ragbus.lag import LagReader
from ragbus_ops.eval.datasets import Document, load_squad
from ragbus_ops.supervisor import HEALTH_TIMEOUT_S, Child, wait_healthy

REPO = Path(__file__).resolve().parents[1]
SQUAD_DEV = REPO.parent / "shared" / "data" / "squad" / "dev-v1.1.json"
FIXED = (("ingest",), ("status",), ("indexer", "query"))
UPLOAD_BATCH = 100
SETTLE_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class Options:
    bursts: int
    documents: int  # per burst
    pause_s: float  # between bursts
    tick_s: float
    chunker: ScaleRule
    embedder: ScaleRule
    data_dir: Path
    reports: Path
    squad: Path


class Demo:
    """The broker, the fixed services and the two scaled stages of one run."""

    def __init__(self, options: Options) -> None:
        self.options = options
        shutil.rmtree(options.data_dir, ignore_errors=True)
        self.logs = options.data_dir / "logs"
        port, controller, tls = free_ports(3)
        self.kafka = LocalKafka(options.data_dir / "kafka", port, controller, tls_port=tls)
        names = [name for group in FIXED for name in group]
        self.urls = {
            name: f"http://127.0.0.1:{p}"
            for name, p in zip(names, free_ports(len(names)), strict=True)
        }
        self.env = {
            **_environment(),
            "RAGBUS_KAFKA_BOOTSTRAP": self.kafka.bootstrap_servers,
            "RAGBUS_DATA_DIR": str(options.data_dir),
            "RAGBUS_LAG_INTERVAL_S": str(options.tick_s),
            **{
                f"RAGBUS_{name.upper()}_PORT": url.rsplit(":", 1)[1]
                for name, url in self.urls.items()
            },
        }
        self.fixed = [Child(group, self.logs / f"{'+'.join(group)}.log") for group in FIXED]
        self.stages = [
            Scaled("ragbus-chunker", DOCUMENT_UPLOADED, options.chunker, self._pool("chunker")),
            Scaled("ragbus-embedder", CHUNKS_READY, options.embedder, self._pool("embedder")),
        ]
        self.ticks: list[Tick] = []
        self.started = time.monotonic()

    def _pool(self, service: str) -> ReplicaPool:
        env = self.env | self.kafka.service_env(service)
        return ReplicaPool(service, env, self.logs, lambda: free_ports(1)[0])

    def start(self) -> None:
        fetch_broker()
        self.kafka.start()
        self.kafka.wait_ready(timeout=120)
        bootstrap_topics_blocking(self.kafka.client_options(), all_topics())
        for child in self.fixed:
            child.start(self.env | self.kafka.service_env(*child.services))
        for stage in self.stages:
            stage.pool.scale_to(stage.rule.min_replicas)
        for name, url in self.urls.items():
            wait_healthy(name, url, HEALTH_TIMEOUT_S)
        self.started = time.monotonic()

    def stop(self) -> None:
        for stage in self.stages:
            stage.pool.close()
        for child in reversed(self.fixed):
            child.stop()
        self.kafka.stop()

    async def tick(self, reader: LagReader) -> list[Tick]:
        now = round(time.monotonic() - self.started, 2)
        ticks = []
        for stage in self.stages:
            if exited := stage.pool.exited():
                raise RuntimeError(f"{stage.pool.service} replicas exited: {exited}")
            ticks.append(stage.apply(now, await reader.read(stage.group, stage.topic)))
        self.ticks += ticks
        return ticks


async def run(options: Options, documents: Sequence[Document]) -> tuple[list[Tick], dict[str, Any]]:
    """Run the demo; every tick, and the outcome."""
    demo = Demo(options)
    try:
        demo.start()
        print(f"up: broker {demo.kafka.bootstrap_servers}, logs in {demo.logs}", flush=True)
        async with LagReader(demo.kafka.client_options()) as reader, httpx.AsyncClient() as http:
            uploaded = await _drive(demo, reader, http, documents)
            records = await _settled_records(demo, reader, http, uploaded)
        demo.fixed[-1].stop()  # the indexer, so the storage can be opened here
        stored = _stored_points(options.data_dir / "index")
    finally:
        demo.stop()
    return demo.ticks, _outcome(options, demo.ticks, uploaded, records, stored)


async def _drive(
    demo: Demo, reader: LagReader, http: httpx.AsyncClient, documents: Sequence[Document]
) -> list[str]:
    """Upload the bursts while the autoscaler ticks; the ids of the uploaded documents."""
    uploaded: list[str] = []
    per_burst = demo.options.documents
    for burst in range(demo.options.bursts):
        chosen = documents[burst * per_burst : (burst + 1) * per_burst]
        print(f"burst {burst + 1}: {len(chosen)} documents", flush=True)
        uploading = asyncio.create_task(_upload(http, demo.urls["ingest"], chosen))
        while not uploading.done():
            _say(await demo.tick(reader))
            await asyncio.wait({uploading}, timeout=demo.options.tick_s)
        uploaded += uploading.result()
        last = burst + 1 == demo.options.bursts
        pause_until = time.monotonic() + (0 if last else demo.options.pause_s)
        while time.monotonic() < pause_until:
            _say(await demo.tick(reader))
            await asyncio.sleep(demo.options.tick_s)
    return uploaded


async def _settled_records(
    demo: Demo, reader: LagReader, http: httpx.AsyncClient, uploaded: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Tick until every upload is final, both groups have no lag and every stage is back at
    its minimum; the uploads' status records."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        ticks = await demo.tick(reader)
        _say(ticks)
        records = await _records(http, demo.urls["status"], uploaded)
        final = all(r.get("state") in ("INDEXED", "FAILED") for r in records.values())
        idle = all(t.lag == 0 for t in ticks)
        at_minimum = all(s.pool.replicas == s.rule.min_replicas for s in demo.stages)
        if (len(records) == len(uploaded) and final and idle and at_minimum) or (
            time.monotonic() > deadline
        ):
            return records
        await asyncio.sleep(demo.options.tick_s)


async def _upload(http: httpx.AsyncClient, ingest: str, documents: Sequence[Document]) -> list[str]:
    ids = []
    for start in range(0, len(documents), UPLOAD_BATCH):
        batch = documents[start : start + UPLOAD_BATCH]
        body = {
            "documents": [
                {"text": d.text, "title": d.filename.removesuffix(".txt"), "metadata": {}}
                for d in batch
            ]
        }
        response = await http.post(f"{ingest}/v1/documents", json=body, timeout=300)
        response.raise_for_status()
        ids += [row["document_id"] for row in response.json()["documents"]]
    return ids


async def _records(
    http: httpx.AsyncClient, status: str, wanted: Sequence[str]
) -> dict[str, dict[str, Any]]:
    response = await http.get(f"{status}/v1/documents", params={"limit": 100_000}, timeout=60)
    response.raise_for_status()
    ids = set(wanted)
    return {r["document_id"]: r for r in response.json()["documents"] if r["document_id"] in ids}


def _stored_points(path: Path, alias: str = "ragbus") -> set[str]:
    return {point_id for point_id, _ in stored_points(path, alias)}


def _outcome(
    options: Options,
    ticks: Sequence[Tick],
    uploaded: Sequence[str],
    records: dict[str, dict[str, Any]],
    stored: set[str],
) -> dict[str, Any]:
    expected = {
        chunk_id(document_id, record["version"], n)
        for document_id, record in records.items()
        for n in range(record.get("chunks") or 0)
    }
    rules = {"ragbus-chunker": options.chunker, "ragbus-embedder": options.embedder}
    problems = {
        group: follows_the_rule(rule, [t for t in ticks if t.group == group], rule.min_replicas)
        for group, rule in rules.items()
    }
    states: dict[str, int] = {}
    for record in records.values():
        states[record["state"]] = states.get(record["state"], 0) + 1
    return {
        "documents": len(uploaded),
        "states": states,
        "expected_points": len(expected),
        "actual_points": len(stored),
        "lost": len(expected - stored),
        "duplicated": len(stored - expected),
        "ticks": len(ticks),
        "seconds": max((t.t for t in ticks), default=0),
        "rules": {group: asdict(rule) for group, rule in rules.items()},
        "peak_replicas": {
            group: max((t.replicas for t in ticks if t.group == group), default=0)
            for group in rules
        },
        "peak_lag": {
            group: max((t.lag for t in ticks if t.group == group), default=0) for group in rules
        },
        "rule_followed": {group: not found for group, found in problems.items()},
        "rule_problems": {group: found[:10] for group, found in problems.items() if found},
    }


def write_reports(reports: Path, ticks: Sequence[Tick], outcome: dict[str, Any]) -> None:
    reports.mkdir(parents=True, exist_ok=True)
    with (reports / "scale-demo.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["t", "group", "partitions", "lag", "desired", "replicas"])
        writer.writerows([t.t, t.group, t.partitions, t.lag, t.desired, t.replicas] for t in ticks)
    (reports / "scale-demo.json").write_text(json.dumps(outcome, indent=2) + "\n")
    chart(ticks, reports / "scale-demo.png")


def chart(ticks: Sequence[Tick], path: Path) -> None:
    """Lag (left axis) and desired and running replicas (right axis) per group over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({t.group for t in ticks})
    figure, _ = plt.subplots(len(groups), 1, figsize=(10, 3.6 * len(groups)), sharex=True)
    for axis, group in zip(list(figure.axes), groups, strict=True):
        rows = [t for t in ticks if t.group == group]
        times = [t.t for t in rows]
        axis.fill_between(times, [t.lag for t in rows], step="post", alpha=0.3, label="lag")
        axis.set_ylabel(f"{group}\nlag (records)")
        replicas = axis.twinx()
        replicas.step(times, [t.replicas for t in rows], where="post", color="C1", label="replicas")
        replicas.step(
            times,
            [t.desired for t in rows],
            where="post",
            color="C2",
            linestyle=":",
            label="desired",
        )
        replicas.set_ylabel("replicas")
        replicas.set_ylim(0, max(t.replicas for t in rows) + 1)
        lines = axis.get_legend_handles_labels()
        more = replicas.get_legend_handles_labels()
        axis.legend(lines[0] + more[0], lines[1] + more[1], loc="upper right")
    figure.axes[len(groups) - 1].set_xlabel("seconds")
    figure.suptitle("ragbus scale-demo: KEDA's Kafka rule on the real consumer groups")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _say(ticks: Sequence[Tick]) -> None:
    line = "  ".join(
        f"{t.group.removeprefix('ragbus-')}: lag {t.lag:>5} → {t.replicas} replicas" for t in ticks
    )
    print(f"{ticks[0].t:7.1f} s  {line}", flush=True)


def _environment() -> dict[str, str]:
    """This process's environment without ragbus settings: the settings of a stack of the
    user's own must not leak into the demo's."""
    foreign = {"QDRANT_URL", "TEI_URL", "LLM_URL", "LLM_MODEL", "RERANK_URL"}
    return {k: v for k, v in os.environ.items() if not k.startswith("RAGBUS_") and k not in foreign}


def parse(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="scale-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bursts", type=int, default=2)
    parser.add_argument("--documents", type=int, default=400, help="per burst")
    parser.add_argument("--pause", type=float, default=60.0, help="seconds between bursts")
    parser.add_argument("--tick", type=float, default=3.0, help="seconds between readings")
    parser.add_argument("--chunker-threshold", type=int, default=60)
    parser.add_argument("--embedder-threshold", type=int, default=40)
    parser.add_argument("--max-replicas", type=int, default=4)
    parser.add_argument("--cooldown", type=float, default=30.0, help="scale-in window, seconds")
    parser.add_argument("--data-dir", type=Path, default=REPO / "var" / "scale-demo")
    parser.add_argument("--reports", type=Path, default=REPO / "reports")
    parser.add_argument("--squad", type=Path, default=SQUAD_DEV)
    args = parser.parse_args(argv)

    def rule(threshold: int) -> ScaleRule:
        return ScaleRule(threshold, 0, 1, args.max_replicas, args.cooldown)

    return Options(
        args.bursts,
        args.documents,
        args.pause,
        args.tick,
        rule(args.chunker_threshold),
        rule(args.embedder_threshold),
        args.data_dir.resolve(),
        args.reports,
        args.squad,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    if not options.squad.is_file():
        print(f"scale-demo needs SQuAD v1.1 dev at {options.squad}", file=sys.stderr)
        return 2
    documents = load_squad(options.squad).documents[: options.bursts * options.documents]
    ticks, outcome = asyncio.run(run(options, documents))
    write_reports(options.reports, ticks, outcome)
    print(json.dumps(outcome, indent=2))
    ok = outcome["lost"] == outcome["duplicated"] == 0 and all(outcome["rule_followed"].values())
    return 0 if ok and set(outcome["states"]) == {"INDEXED"} else 1


if __name__ == "__main__":
    raise SystemExit(main())
