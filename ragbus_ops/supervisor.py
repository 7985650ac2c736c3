"""`ragbus up`: the broker and every service as processes on one machine, watched and restarted.

With embedded Qdrant storage (no `QDRANT_URL`) the indexer and the query service share one
process, because the storage admits a single opener; with a server every service runs alone.
Without `LLM_URL` a llama.cpp server with the packaged model is started for generation.
"""

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from contracts.topics import all_topics
from deploy.kafka.launcher import LocalKafka, bootstrap_topics_blocking, fetch_broker
from ragbus.logs import log_tail
from ragbus.settings import KafkaSettings, LlmSettings, StoreSettings
from ragbus_ops.llm_server import MODEL_ALIAS, LlamaServer
from services.registry import port_of

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 180.0
RESTART_LIMIT = 5
PID_FILE = "ragbus.pid"
LLM_PORT = 8090
LLM_THREADS = 2
_LLM_VARS = frozenset({"LLM_URL", "RAGBUS_LLM_URL", "LLM_MODEL", "RAGBUS_LLM_MODEL"})


class StackSettings(KafkaSettings, StoreSettings, LlmSettings):
    """What the stack reads: the data directory, the topics' partitions, whether Qdrant is a
    server (then the indexer and the query service run apart), and the language model."""


def wait_healthy(
    name: str,
    url: str,
    timeout_s: float,
    exited: Callable[[], bool] = lambda: False,
    details: Callable[[], str] = lambda: "",
) -> None:
    """Poll `url`/healthz until it answers 200 (the service reached its broker); raise
    RuntimeError, with `details()` (a log tail), when `exited()` or after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        if exited():
            raise RuntimeError(f"{name} exited during start; {details()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} not healthy at {url} in {timeout_s:.0f} s; {details()}")
        time.sleep(0.3)


@dataclass
class Child:
    """One process serving one or more services."""

    services: tuple[str, ...]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    peak_rss_mb: float = 0.0
    stopping: bool = field(default=False, repr=False)

    @property
    def name(self) -> str:
        return "+".join(self.services)

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def log_excerpt(self) -> str:
        return f"see {self.log_path}:\n{log_tail(self.log_path, 20)}"

    def start(self, env: dict[str, str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ragbus_ops", "serve", *self.services],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def sample_memory(self) -> None:
        if self.process is None:
            return
        self.peak_rss_mb = max(self.peak_rss_mb, _rss_mb(self.process.pid))

    def stop(self, timeout: float = 30.0) -> None:
        self.stopping = True
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Stack:
    def __init__(self, settings: StackSettings, llm: bool = True) -> None:
        """`llm=False` runs without generation: the query service answers extractively."""
        self.settings = settings
        self.generate = llm
        self.data_dir = settings.data_dir.resolve()
        self.kafka = LocalKafka(self.data_dir / "kafka")
        groups: list[tuple[str, ...]] = [("ingest",), ("chunker",), ("embedder",)]
        groups += [("indexer",), ("query",)] if settings.qdrant_url else [("indexer", "query")]
        groups.append(("status",))
        self.children = [
            Child(group, self.data_dir / "logs" / f"{'+'.join(group)}.log") for group in groups
        ]
        self.llm_server = (
            LlamaServer(
                int(os.environ.get("RAGBUS_LLM_PORT", LLM_PORT)),
                int(os.environ.get("RAGBUS_LLM_THREADS", LLM_THREADS)),
                self.data_dir / "logs" / "llm.log",
            )
            if llm and not settings.llm_url
            else None
        )
        self._stop = threading.Event()
        self.broker_peak_rss_mb = 0.0
        self.llm_peak_rss_mb = 0.0

    def env(self) -> dict[str, str]:
        return {
            **{name: value for name, value in os.environ.items() if name not in _LLM_VARS},
            "RAGBUS_KAFKA_BOOTSTRAP": self.kafka.bootstrap_servers,
            "RAGBUS_DATA_DIR": str(self.data_dir),
            **self.llm_env(),
        }

    def llm_env(self) -> dict[str, str]:
        """Where the children generate: the embedded server, the configured endpoint, or nowhere."""
        if self.llm_server is not None:
            return {"LLM_URL": self.llm_server.url, "LLM_MODEL": MODEL_ALIAS}
        if self.generate and self.settings.llm_url:
            return {"LLM_URL": self.settings.llm_url, "LLM_MODEL": self.settings.llm_model}
        return {}

    def start(self) -> None:
        if self.llm_server is not None:
            print("preparing the language model (first time: joins the GGUF parts)…", flush=True)
            self.llm_server.start()  # joins the model, then loads it while Kafka starts
        print("fetching the Kafka broker (Maven Central, cached after the first time)…", flush=True)
        fetch_broker()
        print(f"starting Kafka on {self.kafka.bootstrap_servers}…", flush=True)
        self.kafka.start()
        self.kafka.wait_ready(timeout=120)
        created = bootstrap_topics_blocking(
            self.kafka.client_options(), all_topics(self.settings.partitions)
        )
        if created:
            print(f"created topics: {', '.join(created)}", flush=True)
        if self.llm_server is not None:
            self.llm_server.wait_ready(timeout=HEALTH_TIMEOUT_S)
        env = self.env()
        for child in self.children:
            child.start(env | self.kafka.service_env(*child.services))
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        for child in self.children:
            for service in child.services:
                wait_healthy(
                    service,
                    f"http://127.0.0.1:{port_of(service)}",
                    deadline - time.monotonic(),
                    exited=child.exited,
                    details=child.log_excerpt,
                )

    def print_urls(self) -> None:
        print("\nragbus is up:", flush=True)
        print(
            f"  broker   {self.kafka.bootstrap_servers} (SASL SCRAM-SHA-512), "
            f"{self.kafka.tls_servers} (TLS client certificates); credentials in "
            f"{self.kafka.access_file}"
        )
        for service in ("ingest", "query", "status", "indexer", "chunker", "embedder"):
            print(f"  {service:<8} http://127.0.0.1:{port_of(service)}  (docs: /docs)")
        llm = self.llm_env()
        print(
            f"  llm      {llm['LLM_URL']}  ({llm['LLM_MODEL'] or 'default model'})"
            if llm
            else "  llm      off (answers are extractive)"
        )
        print(
            f"  logs     {self.data_dir / 'logs'}\nCtrl-C (or `make down`) stops everything.\n",
            flush=True,
        )

    def watch(self) -> None:
        """Sample memory and restart a child that died, until asked to stop."""
        env = self.env()
        while not self._stop.wait(2.0):
            self._sample_peaks()
            for child in self.children:
                child.sample_memory()
                process = child.process
                if process is None or process.poll() is None or child.stopping:
                    continue
                if child.restarts >= RESTART_LIMIT:
                    print(
                        f"{child.name} keeps exiting; giving up (see {child.log_path})", flush=True
                    )
                    self._stop.set()
                    break
                child.restarts += 1
                print(f"{child.name} exited with {process.returncode}; restarting", flush=True)
                child.start(env)

    def _sample_peaks(self) -> None:
        self.broker_peak_rss_mb = max(self.broker_peak_rss_mb, _rss_mb(self.kafka.pid()))
        if self.llm_server is not None:
            self.llm_peak_rss_mb = max(self.llm_peak_rss_mb, _rss_mb(self.llm_server.pid()))

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self) -> None:
        # A last sample: a stack driven by another command (`ragbus eval`) never ran `watch`.
        self._sample_peaks()
        for child in reversed(self.children):
            child.sample_memory()
            child.stop()
        self.kafka.stop()
        if self.llm_server is not None:
            self.llm_server.stop()
        peaks = {child.name: round(child.peak_rss_mb, 1) for child in self.children}
        peaks["kafka"] = round(self.broker_peak_rss_mb, 1)
        if self.llm_server is not None:
            peaks["llm"] = round(self.llm_peak_rss_mb, 1)
        (self.data_dir / "peak-rss.json").write_text(json.dumps(peaks, indent=2))
        print(f"stopped; peak memory (MB): {peaks}", flush=True)


def _rss_mb(pid: int | None) -> float:
    """Resident memory of `pid` and its children (an embedded index's shard processes) in MB; 0
    once it is gone."""
    if not pid:
        return 0.0
    try:
        process = psutil.Process(pid)
        processes = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for each in processes:
        with contextlib.suppress(psutil.Error):
            total += each.memory_info().rss
    return total / 2**20


def up(settings: StackSettings, llm: bool = True) -> int:
    """Run the whole stack in the foreground until SIGINT/SIGTERM; `llm=False`: no generation."""
    stack = Stack(settings, llm)
    pid_file = stack.data_dir / PID_FILE
    stack.data_dir.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(str(os.getpid()))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stack.request_stop())
    try:
        stack.start()
        stack.print_urls()
        stack.watch()
        return 0
    except RuntimeError as exc:
        print(f"ragbus up failed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        stack.stop()
        pid_file.unlink(missing_ok=True)


def down(settings: StackSettings, timeout: float = 90.0) -> int:
    """Stop a stack started by `ragbus up` from another shell."""
    pid_file = settings.data_dir.resolve() / PID_FILE
    if not pid_file.exists():
        print("ragbus is not running (no pid file)")
        return 0
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return 0
    deadline = time.monotonic() + timeout
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    return 0 if not psutil.pid_exists(pid) else 1
