"""The whole pipeline as real processes against the session's real broker."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deploy.kafka.launcher import LocalKafka, free_ports
from ragbus_ops.llm_server import MODEL_ALIAS
from ragbus_ops.supervisor import wait_healthy
from tests.conftest import STARTED

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
PROCESSES = (("ingest",), ("chunker",), ("embedder",), ("indexer", "query"), ("status",))


@dataclass
class Stack:
    """Service processes sharing one data dir; `urls` by service name."""

    data_dir: Path
    env: dict[str, str]
    urls: dict[str, str] = field(default_factory=dict)
    # The broker, when the session started it: each process then signs in as its own principal.
    kafka: LocalKafka | None = None
    processes: dict[tuple[str, ...], subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, services: tuple[str, ...]) -> None:
        log = (self.data_dir / f"{'+'.join(services)}.log").open("ab")
        self.processes[services] = subprocess.Popen(
            [sys.executable, "-m", "ragbus_ops", "serve", *services],
            env=self.env | (self.kafka.service_env(*services) if self.kafka else {}),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        for service in services:
            self._wait_healthy(service, services)

    def _wait_healthy(self, service: str, group: tuple[str, ...], timeout: float = 120) -> None:
        wait_healthy(
            service,
            self.urls[service],
            timeout,
            exited=lambda: self.processes[group].poll() is not None,
            details=lambda: self.log_tail(group),
        )

    def log_tail(self, group: tuple[str, ...]) -> str:
        path = self.data_dir / f"{'+'.join(group)}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-30:])

    def kill(self, services: tuple[str, ...]) -> None:
        process = self.processes.pop(services)
        process.kill()
        process.wait()

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def run_stack(
    kafka: str, data_dir: Path, blob_roots: list[Path], llm_url: str | None = None
) -> Iterator[Stack]:
    """Every service as a real process on `kafka`, sharing `data_dir`; stopped afterwards."""
    names = [name for group in PROCESSES for name in group]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    env = {
        **os.environ,
        "RAGBUS_KAFKA_BOOTSTRAP": kafka,
        "RAGBUS_DATA_DIR": str(data_dir),
        # Tests publish events naming files of their own and of the shared data, as producers
        # outside the blob store do.
        "RAGBUS_BLOB_ROOTS": json.dumps([str(root) for root in blob_roots]),
        **{f"RAGBUS_{name.upper()}_PORT": str(port) for name, port in ports.items()},
    }
    for unset in ("QDRANT_URL", "TEI_URL", "LLM_URL", "LLM_MODEL"):
        env.pop(unset, None)
    if llm_url:
        env |= {"LLM_URL": llm_url, "LLM_MODEL": MODEL_ALIAS}
    urls = {name: f"http://127.0.0.1:{p}" for name, p in ports.items()}
    running = Stack(data_dir, env, urls, kafka=STARTED.get(kafka))
    try:
        for group in PROCESSES:
            running.start(group)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def stack(
    kafka_broker: str, llm_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    yield from run_stack(
        kafka_broker,
        tmp_path_factory.mktemp("ragbus"),
        [tmp_path_factory.getbasetemp(), SHARED_DATA.resolve()],
        llm_server,
    )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared test data is not at {SHARED_DATA}")
    return SHARED_DATA
