"""A ragbus deployment the fault tests may break: its own broker and its own service processes.

The broker keeps its ports and data dir for the cluster's whole life, so it can be killed and
started again where every client finds it. Each service runs as its own process
(`ragbus serve <service>`, its port from `RAGBUS_<SERVICE>_PORT`) in a session of its own, so a
kill -9 hits that process alone. With embedded Qdrant storage the indexer process is the only
opener of `<data_dir>/index`: the points are read back straight from the storage once it has
stopped (`stored_points`), every one with its id, so a lost or an extra point shows by name.
"""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from contracts.topics import CONSUMED, dlq
from deploy.kafka.launcher import LocalKafka, bootstrap_topics_blocking, free_ports
from ragbus.adapters.edge_store import stored_points
from ragbus.lag import LagReader
from ragbus.logs import log_tail
from ragbus_ops.eval.datasets import Document
from ragbus_ops.supervisor import wait_healthy
from tests.bus import kafka_options, read_all
from tests.conftest import _start_broker

from .corpus import REPO, upload_body

HEALTH_TIMEOUT_S = 240.0
REQUEST_TIMEOUT_S = 120.0
# What an upload client does while the broker restarts: try again until this much time passed.
UPLOAD_DEADLINE_S = 600.0
UPLOAD_BATCH = 50
# Backends the services would otherwise reach from the caller's environment.
_EXTERNAL = ("QDRANT_URL", "TEI_URL", "LLM_URL", "RERANK_URL")


@dataclass
class Process:
    """One service process; its name and port survive restarts (`embedder-2` runs `embedder`)."""

    name: str
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: "subprocess.Popen[bytes] | None" = None

    @property
    def service(self) -> str:
        return self.name.partition("-")[0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass(frozen=True)
class StoredPoint:
    id: str
    tenant_id: str
    document_id: str
    version: str
    live: bool


class Cluster:
    """A broker and ragbus service processes rooted in `root`, with one API key per tenant."""

    def __init__(self, root: Path, tenants: Iterable[str]) -> None:
        self.root = root
        self.data_dir = root / "ragbus"
        self.keys = {tenant: f"key-{tenant}" for tenant in tenants}
        self.processes: dict[str, Process] = {}
        self._broker: LocalKafka | None = None
        self.upload_retries = 0

    # broker ------------------------------------------------------------------------------

    @property
    def broker(self) -> LocalKafka:
        assert self._broker is not None, "start_broker() first"
        return self._broker

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap_servers

    def start_broker(self) -> None:
        """First start, on free ports, with every ragbus topic (the production partitions)."""
        self._broker = _start_broker(self.root / "kafka")
        bootstrap_topics_blocking(self.broker.client_options())

    def kill_broker(self) -> None:
        self.broker.kill()

    def restart_broker(self, timeout: float = HEALTH_TIMEOUT_S) -> None:
        """Start the broker again on its ports and data (it recovers its logs after a kill)."""
        self.broker.start()
        self.broker.wait_ready(timeout=timeout)

    # service processes -------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        external = {name for var in _EXTERNAL for name in (var, f"RAGBUS_{var}")}
        return {
            **{name: value for name, value in os.environ.items() if name not in external},
            "RAGBUS_KAFKA_BOOTSTRAP": self.bootstrap,
            "RAGBUS_DATA_DIR": str(self.data_dir),
            "RAGBUS_API_KEYS": ",".join(f"{key}:{tenant}" for tenant, key in self.keys.items()),
        }

    def start(self, name: str, **env: str) -> Process:
        """Start (or start again) the process `name`; `env` is kept for its restarts."""
        process = self.processes.get(name)
        if process is None:
            process = Process(name, free_ports(1)[0], self.root / "logs" / f"{name}.log", env)
            self.processes[name] = process
        assert not process.alive(), f"{name} is running"
        process.log_path.parent.mkdir(parents=True, exist_ok=True)
        with process.log_path.open("ab") as log:
            process.popen = subprocess.Popen(
                [sys.executable, "-m", "ragbus_ops", "serve", process.service],
                env={
                    **self.env(),
                    **self.broker.service_env(process.service),
                    f"RAGBUS_{process.service.upper()}_PORT": str(process.port),
                    **process.env,
                },
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                start_new_session=True,
            )
        return process

    def wait_healthy(
        self, names: Iterable[str] | None = None, timeout: float = HEALTH_TIMEOUT_S
    ) -> None:
        """Until every named process (default: all) answers /healthz with 200 (broker reached)."""
        deadline = time.monotonic() + timeout
        for name in list(self.processes) if names is None else names:
            process = self.processes[name]
            wait_healthy(
                name,
                process.url,
                deadline - time.monotonic(),
                exited=partial(_exited, process),
                details=partial(self.log_tail, name),
            )

    def kill(self, name: str) -> None:
        """kill -9: no shutdown hook runs, nothing is flushed or committed on the way out."""
        popen = self.processes[name].popen
        assert popen is not None and popen.poll() is None, f"{name} is not running"
        popen.kill()
        popen.wait()

    def terminate(self, name: str, timeout: float = 60.0) -> int:
        """SIGTERM, the way an orchestrator scales a replica down; the exit code."""
        popen = self.processes[name].popen
        assert popen is not None and popen.poll() is None, f"{name} is not running"
        popen.send_signal(signal.SIGTERM)
        try:
            return popen.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            popen.kill()
            popen.wait()
            raise AssertionError(f"{name} ignored SIGTERM for {timeout} s") from exc

    def restart(self, name: str) -> None:
        self.start(name)
        self.wait_healthy([name])

    def log_tail(self, name: str, lines: int = 40) -> str:
        return log_tail(self.processes[name].log_path, lines)

    def close(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL) and the broker."""
        running = [p.popen for p in self.processes.values() if p.popen and p.popen.poll() is None]
        for popen in running:
            popen.terminate()
        for popen in running:
            try:
                popen.wait(30)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()
        if self._broker is not None:
            self._broker.stop()

    # HTTP ----------------------------------------------------------------------------------

    def url(self, name: str) -> str:
        return self.processes[name].url

    def auth(self, tenant: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant]}"}

    def _request(self, method: str, url: str, deadline_s: float, **kwargs: Any) -> httpx.Response:
        """The request, sent again on a connection error, a 5xx or a 429 until `deadline_s`
        passed: what a client does while a service or the broker restarts."""
        deadline = time.monotonic() + deadline_s
        while True:
            pause = 1.0
            try:
                response = httpx.request(method, url, timeout=REQUEST_TIMEOUT_S, **kwargs)
                if response.status_code < 500 and response.status_code != 429:
                    return response
                problem = f"{response.status_code} {response.text[:200]}"
                pause = float(response.headers.get("retry-after", pause))
            except httpx.TransportError as exc:
                problem = repr(exc)
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {url} failed for {deadline_s} s: {problem}")
            self.upload_retries += method == "POST"
            time.sleep(pause)

    def upload(self, tenant: str, documents: Sequence[Document]) -> list[dict[str, Any]]:
        """Upload as JSON text documents, `UPLOAD_BATCH` a request; the accepted documents."""
        accepted: list[dict[str, Any]] = []
        for start in range(0, len(documents), UPLOAD_BATCH):
            response = self._request(
                "POST",
                f"{self.url('ingest')}/v1/documents",
                UPLOAD_DEADLINE_S,
                json=upload_body(documents[start : start + UPLOAD_BATCH]),
                headers=self.auth(tenant),
            )
            assert response.status_code == 202, response.text
            accepted += response.json()["documents"]
        return accepted

    def statuses(self, tenant: str) -> dict[str, dict[str, Any]]:
        """The status service's record of each of the tenant's documents, by document id."""
        response = self._request(
            "GET",
            f"{self.url('status')}/v1/documents",
            HEALTH_TIMEOUT_S,
            params={"limit": 100_000},
            headers=self.auth(tenant),
        )
        assert response.status_code == 200, response.text
        return {record["document_id"]: record for record in response.json()["documents"]}

    def index_info(self, tenant: str) -> dict[str, Any]:
        """`GET /v1/index`: the tenant's points and documents in the serving collection."""
        response = self._request(
            "GET", f"{self.url('indexer')}/v1/index", HEALTH_TIMEOUT_S, headers=self.auth(tenant)
        )
        assert response.status_code == 200, response.text
        info: dict[str, Any] = response.json()
        return info

    # Kafka and the store -------------------------------------------------------------------

    def lag(self, group: str, topic: str) -> int:
        """Records of `topic` the consumer group has not committed yet."""
        return asyncio.run(_lag(self.bootstrap, group, topic))

    def dead_letters(self) -> list[dict[str, Any]]:
        """Every record in every dead-letter topic."""
        return asyncio.run(read_all(self.bootstrap, [dlq(topic) for topic in CONSUMED]))

    def stored_points(
        self, alias: str = "ragbus", generation: int | None = None
    ) -> list[StoredPoint]:
        """Every point of a generation (the serving one), read from the storage itself: the
        indexer process must have stopped first (the embedded engine admits one opener)."""
        assert not any(p.alive() for p in self.processes.values() if p.service == "indexer")
        return [
            StoredPoint(
                point_id,
                str(payload.get("tenant_id")),
                str(payload.get("document_id")),
                str(payload.get("version")),
                bool(payload.get("live")),
            )
            for point_id, payload in stored_points(self.data_dir / "index", alias, generation)
        ]


async def _lag(bootstrap: str, group: str, topic: str) -> int:
    async with LagReader(kafka_options(bootstrap)) as reader:
        return (await reader.read(group, topic)).total


def _exited(process: Process) -> bool:
    return not process.alive()
