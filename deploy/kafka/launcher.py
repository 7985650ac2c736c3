"""A real single-node Apache Kafka broker (KRaft) for local runs and tests, and the topic bootstrap.

Why: ragbus is tested against a real broker, not a mock, and one machine may have neither Docker
nor a Kafka tarball. The official jars come from Maven Central through `pom.xml` next to this
file, into a cache outside the repository; the broker runs as a plain JVM subprocess in its own
process group, so Ctrl-C in a terminal reaches the launcher, which then stops it cleanly.

CLI: ``python -m deploy.kafka.launcher {fetch,start,stop,status,bootstrap}``.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import hashlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self, TypeVar

import orjson
import psutil
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from contracts.topics import DEFAULT_PARTITIONS, TopicSpec, all_topics
from deploy.kafka.access import (
    ADMIN,
    BROKER,
    admin_client,
    allow,
    librdkafka_config,
    service_principal,
    service_principals,
    set_passwords,
)
from deploy.kafka.tls import Authority
from ragbus.settings import KafkaSettings

log = logging.getLogger("deploy.kafka.launcher")  # same name when run with -m

KAFKA_VERSION = "4.1.0"
HOST = "127.0.0.1"
DEFAULT_PORT = 9092
DEFAULT_HEAP = "768m"

_HERE = Path(__file__).resolve().parent
POM_FILE = _HERE / "pom.xml"
LOG4J_CONFIG = _HERE / "log4j2.properties"
SERVER_TEMPLATE = _HERE / "server.properties"

_MARKER = ".ragbus-complete"
_T = TypeVar("_T")


class BrokerError(RuntimeError):
    """The local broker could not be fetched, started, reached or stopped; the message says why."""


# --------------------------------------------------------------------------- fetching the jars


def default_cache_dir() -> Path:
    """Where the broker jars live: outside the repo, shared by every checkout and test run."""
    env = os.environ.get("RAGBUS_KAFKA_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "ragbus" / f"kafka-{KAFKA_VERSION}" / "libs"


def _pom_digest() -> str:
    """Ties a cached jar set to the pom that resolved it, so editing the pom refetches."""
    return hashlib.sha256(POM_FILE.read_bytes()).hexdigest()


def _is_complete(libs: Path) -> bool:
    marker = libs / _MARKER
    return marker.is_file() and marker.read_text().strip() == _pom_digest()


def find_java() -> str:
    """The `java` executable ($JAVA_HOME first), or a BrokerError saying how to get one."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise BrokerError(
            "Java 17+ is needed to run the Kafka broker but `java` is not on PATH "
            "(install a JDK, e.g. `apt-get install openjdk-17-jre-headless`, or set JAVA_HOME)"
        )
    return java


def fetch_broker(cache_dir: Path | str | None = None) -> Path:
    """Resolve the Kafka broker jars with Maven into `cache_dir`; return that directory.

    Skipped when a previous run completed (a marker file holding the pom's digest is written
    last); the jars are copied into a scratch directory first and renamed into place, so an
    interrupted fetch never leaves a half-filled cache behind.
    """
    libs = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if _is_complete(libs):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            "Maven (`mvn`) is needed once to fetch the Kafka broker jars from Maven Central "
            "but is not on PATH (install Maven 3.8+, e.g. `apt-get install maven`, or point "
            f"RAGBUS_KAFKA_CACHE at a directory already holding the jars); wanted: {libs}"
        )
    find_java()
    libs.parent.mkdir(parents=True, exist_ok=True)
    scratch = libs.with_name(f"{libs.name}.partial-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    log.info("fetching Apache Kafka %s jars from Maven Central into %s", KAFKA_VERSION, libs)
    cmd = [
        mvn, "-q", "-B", "-f", str(POM_FILE),
        "dependency:copy-dependencies", f"-DoutputDirectory={scratch}",
    ]  # fmt: skip
    done = subprocess.run(
        cmd, cwd=libs.parent, capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0 or not any(scratch.glob("kafka_2.13-*.jar")):
        shutil.rmtree(scratch, ignore_errors=True)
        raise BrokerError(
            f"`{' '.join(cmd)}` failed (exit {done.returncode}):\n"
            f"{_tail_text(done.stdout + done.stderr, 30)}"
        )
    (scratch / _MARKER).write_text(_pom_digest() + "\n")
    if _is_complete(libs):  # another process finished first; keep its copy
        shutil.rmtree(scratch, ignore_errors=True)
        return libs
    shutil.rmtree(libs, ignore_errors=True)
    try:
        scratch.rename(libs)
    except OSError:
        shutil.rmtree(scratch, ignore_errors=True)
        if not _is_complete(libs):
            raise
    return libs


# --------------------------------------------------------------------------- small helpers


def default_port() -> int:
    """The broker port: RAGBUS_KAFKA_PORT or 9092."""
    return int(os.environ.get("RAGBUS_KAFKA_PORT", DEFAULT_PORT))


def default_data_dir() -> Path:
    """RAGBUS_KAFKA_DATA_DIR, else `<RAGBUS_DATA_DIR or ./var>/kafka` (relative to the cwd)."""
    env = os.environ.get("RAGBUS_KAFKA_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("RAGBUS_DATA_DIR", "var")) / "kafka"


def port_in_use(port: int, host: str = HOST) -> bool:
    """Whether something already listens on (or holds) host:port.

    Binds the way the JVM does (SO_REUSEADDR), so a port left in TIME_WAIT by a previous
    broker on the same data dir still counts as free.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def free_ports(count: int = 1, host: str = HOST) -> list[int]:
    """`count` distinct ports the OS reports free right now (for tests and parallel runs)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def new_cluster_id() -> str:
    """A Kafka cluster id, as `kafka-storage random-uuid` makes it, without starting a JVM."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):  # Kafka avoids ids that look like CLI flags
            return cid


def render_server_properties(
    port: int,
    controller_port: int,
    log_dirs: Path,
    broker_password: str,
    tls_port: int,
    tls_dir: Path,
) -> str:
    """The broker config: `server.properties` next to this file with its placeholders filled."""
    return SERVER_TEMPLATE.read_text().format(
        port=port,
        controller_port=controller_port,
        tls_port=tls_port,
        tls_dir=tls_dir.resolve(),
        log_dirs=log_dirs.resolve(),
        broker_user=BROKER,
        broker_password=broker_password,
        admin_user=ADMIN,
    )


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (it holds a password)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)


def _tail_text(text: str, lines: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _run_blocking(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run `coro` to completion from sync code, even when this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


# --------------------------------------------------------------------------- the broker


class LocalKafka:
    """One single-node KRaft broker+controller rooted in a data directory.

    The data dir holds everything the broker writes: `server.properties` (rendered each start),
    `kraft/` (the log dirs, formatted on first start), `broker.log` and `kafka.pid`. A second
    `LocalKafka` on the same data dir (e.g. `launcher stop` from another shell) finds the running
    broker through the pid file.

    Every client signs in: `access.json` (owner-only, made on first start) holds a password
    for the broker's own principal, `ragbus-admin` and each service's principal
    (`deploy.kafka.access`); each start gives them their SCRAM credentials and ACLs, and writes
    each service's password to `secrets/<principal>` for `RAGBUS_KAFKA_PASSWORD_FILE`.
    RAGBUS_KAFKA_ADMIN_PASSWORD, when set, is the admin's password instead of the stored one.
    """

    def __init__(
        self,
        data_dir: Path | str | None = None,
        port: int | None = None,
        controller_port: int | None = None,
        *,
        tls_port: int | None = None,
        cache_dir: Path | str | None = None,
        heap: str = DEFAULT_HEAP,
        stop_on_exit: bool = True,
    ) -> None:
        self.data_dir = (Path(data_dir) if data_dir is not None else default_data_dir()).resolve()
        self.port = port if port is not None else default_port()
        env_controller = os.environ.get("RAGBUS_KAFKA_CONTROLLER_PORT")
        if controller_port is not None:
            self.controller_port = controller_port
        elif env_controller and port is None:
            self.controller_port = int(env_controller)
        else:
            self.controller_port = self.port + 1
        self.tls_port = tls_port if tls_port is not None else self.port + 2
        if len({self.port, self.controller_port, self.tls_port}) != 3:
            raise ValueError("the broker, controller and TLS ports must differ")
        self.cache_dir = cache_dir
        self.heap = heap
        self.stop_on_exit = stop_on_exit
        self._proc: subprocess.Popen[bytes] | None = None

    # paths -----------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        """What clients pass as bootstrap servers: "127.0.0.1:PORT"."""
        return f"{HOST}:{self.port}"

    @property
    def log_dirs(self) -> Path:
        return self.data_dir / "kraft"

    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

    @property
    def access_file(self) -> Path:
        return self.data_dir / "access.json"

    @property
    def tls_servers(self) -> str:
        """The TLS listener, for clients that sign in with a certificate of `authority()`."""
        return f"{HOST}:{self.tls_port}"

    def authority(self) -> Authority:
        """The CA whose client certificates the TLS listener accepts (made the first time)."""
        return Authority(self.data_dir / "tls")

    def password_file(self, principal: str) -> Path:
        return self.data_dir / "secrets" / principal

    # who signs in -------------------------------------------------------------

    def passwords(self) -> dict[str, str]:
        """Each principal's password, made (and kept in `access.json`) the first time."""
        try:
            stored: dict[str, str] = orjson.loads(self.access_file.read_bytes())
        except FileNotFoundError:
            stored = {}
        wanted = [BROKER, ADMIN, *service_principals()]
        if any(principal not in stored for principal in wanted):
            stored = {p: stored.get(p) or secrets.token_urlsafe(24) for p in wanted}
            _write_private(self.access_file, orjson.dumps(stored).decode())
        admin = os.environ.get("RAGBUS_KAFKA_ADMIN_PASSWORD")
        return {**stored, ADMIN: admin} if admin else stored

    def client_options(self, principal: str = ADMIN) -> dict[str, Any]:
        """An aiokafka client's connection options, signed in as `principal` (SCRAM; the
        broker's own principal uses PLAIN)."""
        mechanism = "PLAIN" if principal == BROKER else "SCRAM-SHA-512"
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": mechanism,
            "sasl_plain_username": principal,
            "sasl_plain_password": self.passwords()[principal],
        }

    def service_env(self, *services: str) -> dict[str, str]:
        """The environment that makes a process serving `services` sign in as their principal."""
        principal = service_principal(*services)
        return {
            "RAGBUS_KAFKA_BOOTSTRAP": self.bootstrap_servers,
            "RAGBUS_KAFKA_USERNAME": principal,
            "RAGBUS_KAFKA_PASSWORD": "",
            "RAGBUS_KAFKA_PASSWORD_FILE": str(self.password_file(principal)),
        }

    def _grant_access(self) -> None:
        """Give every principal its SCRAM credential and its ACLs; write the services'
        password files."""
        passwords = self.passwords()
        admin = admin_client(librdkafka_config(self.client_options(BROKER)))
        set_passwords(admin, {p: pw for p, pw in passwords.items() if p != BROKER})
        allow(admin, service_principals())
        for principal in service_principals():
            _write_private(self.password_file(principal), passwords[principal])

    # lifecycle ---------------------------------------------------------------

    def pid(self) -> int | None:
        """The pid of this data dir's running broker, or None (a stale pid file counts as none)."""
        if self._proc is not None:
            return self._proc.pid if self._proc.poll() is None else None
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            cmdline = [str(part) for part in proc.cmdline()]
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None
        # The pid may have been reused by an unrelated process: only a kafka.Kafka JVM reading
        # this data dir's config is ours to signal.
        if "kafka.Kafka" in cmdline and str(self.properties_file) in cmdline:
            return pid
        return None

    def is_running(self) -> bool:
        """Whether this data dir's broker process is alive (not whether it is ready yet)."""
        return self.pid() is not None

    def start(self) -> None:
        """Start the broker JVM in the background; call `wait_ready` before using it.

        Formats the storage on the first start, refuses when this data dir's broker already runs
        or when either port is taken by something else.
        """
        running = self.pid()
        if running is not None:
            raise BrokerError(f"a broker from {self.data_dir} is already running (pid {running})")
        ports = (
            ("broker", self.port),
            ("controller", self.controller_port),
            ("TLS", self.tls_port),
        )
        for name, port in ports:
            if port_in_use(port):
                raise BrokerError(
                    f"the {name} port {HOST}:{port} is already in use by another process; "
                    "stop it or choose other ports (--port / RAGBUS_KAFKA_PORT; the controller "
                    "uses port+1 unless --controller-port is given, TLS port+2)"
                )
        libs = fetch_broker(self.cache_dir)
        java = find_java()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        authority = self.authority()
        server_pem = authority.directory / "broker.pem"
        if not server_pem.is_file():
            crt, key = authority.directory / "broker.crt", authority.directory / "broker.key"
            authority.issue(BROKER, crt, key, host=HOST)
            _write_private(server_pem, key.read_text() + crt.read_text())
        _write_private(
            self.properties_file,
            render_server_properties(
                self.port,
                self.controller_port,
                self.log_dirs,
                self.passwords()[BROKER],
                self.tls_port,
                authority.directory,
            ),
        )
        if not (self.log_dirs / "meta.properties").exists():
            self._format_storage(java, libs)
        cmd = [
            java, f"-Xmx{self.heap}", "-Xms128m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", "-cp", f"{libs}/*",
            "kafka.Kafka", str(self.properties_file),
        ]  # fmt: skip
        with self.log_file.open("ab") as out:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            out.write(f"--- ragbus: starting Kafka {KAFKA_VERSION} at {stamp} ---\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,  # own process group: a terminal's Ctrl-C stays with us
            )
        self.pid_file.write_text(f"{self._proc.pid}\n")
        if self.stop_on_exit:
            atexit.register(self.stop)
        log.info("Kafka broker starting on %s (pid %d)", self.bootstrap_servers, self._proc.pid)

    def _format_storage(self, java: str, libs: Path) -> None:
        """Write meta.properties for a fresh cluster id; the static voters need no --standalone."""
        cmd = [
            java, "-Xmx256m", f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", "-cp", f"{libs}/*",
            "kafka.tools.StorageTool", "format",
            "-t", new_cluster_id(), "-c", str(self.properties_file),
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise BrokerError(
                f"formatting Kafka storage in {self.log_dirs} failed (exit {done.returncode}):\n"
                f"{_tail_text(done.stdout + done.stderr, 30)}"
            )

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the broker log, for error messages."""
        try:
            return _tail_text(self.log_file.read_text(errors="replace"), lines)
        except OSError:
            return "(no broker log)"

    async def wait_ready_async(self, timeout: float = 60.0) -> None:
        """Wait until a Kafka client can fetch metadata that lists a broker, give the
        principals their credentials and ACLs, and wait until the admin can sign in.

        Fails fast with the log tail when the JVM exits (bad config, port race, old Java).
        """
        await self._wait_signed_in(BROKER, timeout)
        await asyncio.to_thread(self._grant_access)
        # The credentials reach the broker as it replays the metadata log: soon, not at once.
        await self._wait_signed_in(ADMIN, timeout)

    async def _wait_signed_in(self, principal: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error: BaseException | None = None
        while True:
            if not self.is_running():
                code = self._proc.poll() if self._proc is not None else None
                raise BrokerError(
                    f"the Kafka broker exited (code {code}) before it was ready; "
                    f"last lines of {self.log_file}:\n{self.log_tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerError(
                    f"the Kafka broker on {self.bootstrap_servers} was not ready after "
                    f"{timeout:.0f} s (last error: {last_error!r}); last lines of "
                    f"{self.log_file}:\n{self.log_tail()}"
                )
            if _accepts_connections(HOST, self.port):
                try:
                    await asyncio.wait_for(
                        _probe_metadata(self.client_options(principal)),
                        timeout=min(remaining, 10.0),
                    )
                    return
                except Exception as exc:  # not ready yet: any client error means "try again"
                    last_error = exc
            await asyncio.sleep(0.2)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Blocking `wait_ready_async`, usable from sync code and from inside a running loop."""
        _run_blocking(self.wait_ready_async(timeout))

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM for a clean shutdown, SIGKILL after `timeout` s; a no-op when not running."""
        pid = self.pid()
        if pid is not None:
            self._signal(pid, signal.SIGTERM)
            if not self._wait_exit(pid, timeout):
                log.warning(
                    "Kafka broker (pid %d) ignored SIGTERM for %.0f s; killing", pid, timeout
                )
                self._signal(pid, signal.SIGKILL)
                self._wait_exit(pid, 10.0)
        self._forget()

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL, as a crash would: no clean shutdown, so the next start recovers its logs.

        Fault tests use it to check that nothing is lost when the broker dies mid-write; a
        no-op when not running.
        """
        pid = self.pid()
        if pid is not None:
            self._signal(pid, signal.SIGKILL)
            if not self._wait_exit(pid, timeout):
                raise BrokerError(f"the Kafka broker (pid {pid}) outlived SIGKILL for {timeout} s")
        self._forget()

    def _forget(self) -> None:
        """Drop the pid file and the handle of a broker that is no longer running."""
        if self._proc is not None:
            self._proc.poll()  # reap the child, dead by now
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
        atexit.unregister(self.stop)
        self._proc = None

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        """Signal the broker's process group (it leads its own session), else just the pid."""
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        try:
            psutil.Process(pid).wait(timeout)
        except psutil.NoSuchProcess:
            pass
        except psutil.TimeoutExpired:
            return False
        return True

    def __enter__(self) -> Self:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _accepts_connections(host: str, port: int) -> bool:
    """A cheap TCP check before the Kafka client, which logs noisily on refused connections."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


async def wait_signed_in(kafka: Mapping[str, Any], timeout: float = 30.0) -> None:
    """Wait until a client with options `kafka` can sign in and read metadata: a credential
    just made reaches the broker as it replays the metadata log, soon but not at once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await asyncio.wait_for(_probe_metadata(kafka), timeout=10.0)
            return
        except Exception as exc:  # any client error means "try again", until the deadline
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"could not sign in as {kafka.get('sasl_plain_username')} within "
                    f"{timeout:.0f} s: {exc!r}"
                ) from exc
        await asyncio.sleep(0.2)


async def _probe_metadata(kafka: Mapping[str, Any]) -> None:
    admin = AIOKafkaAdminClient(**kafka, request_timeout_ms=5000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        if not cluster.get("brokers"):
            raise BrokerError("metadata lists no broker yet")
    finally:
        await admin.close()


# --------------------------------------------------------------------------- topics


async def bootstrap_topics(
    kafka: Mapping[str, Any],
    specs: Sequence[TopicSpec] | None = None,
    *,
    timeout: float = 30.0,
) -> list[str]:
    """Create every topic in `specs` (default: `contracts.topics.all_topics()`) that is missing.

    Idempotent: an existing topic gets the spec's configs (so a new setting, such as the broker
    stamping uploads, reaches a broker started before it), its partitions are left as they are
    (a warning notes a count that differs from the spec). Returns the names it created, once
    every new partition has a leader, so a producer can write to them straight away. `kafka`:
    an aiokafka client's connection options, signed in as an admin.
    """
    specs = list(all_topics() if specs is None else specs)
    admin = AIOKafkaAdminClient(**kafka, request_timeout_ms=int(timeout * 1000))
    await admin.start()
    try:
        existing = {t["topic"]: t for t in await admin.describe_topics() if not t["error_code"]}
        for spec in specs:
            if spec.name in existing and len(existing[spec.name]["partitions"]) != spec.partitions:
                log.warning(
                    "topic %s exists with %d partitions, the spec says %d; leaving it as is",
                    spec.name,
                    len(existing[spec.name]["partitions"]),
                    spec.partitions,
                )
        present = [spec for spec in specs if spec.name in existing]
        if present:
            await admin.alter_configs(
                [
                    ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=dict(spec.configs))
                    for spec in present
                ]
            )
        missing = [spec for spec in specs if spec.name not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [
                NewTopic(
                    name=spec.name,
                    num_partitions=spec.partitions,
                    replication_factor=1,
                    topic_configs=dict(spec.configs),
                )
                for spec in missing
            ],
            timeout_ms=int(timeout * 1000),
        )
        created: list[str] = []
        failures: list[str] = []
        for topic, code, *rest in response.topic_errors:
            if code == 0:
                created.append(topic)
            elif code != TopicAlreadyExistsError.errno:  # created meanwhile by someone else
                failures.append(f"{topic}: error {code} {rest[0] if rest else ''}".rstrip())
        if failures:
            raise BrokerError("could not create topics: " + "; ".join(failures))
        await _wait_for_leaders(admin, {s.name: s.partitions for s in missing}, timeout)
        order = {spec.name: i for i, spec in enumerate(specs)}
        return sorted(created, key=order.__getitem__)
    finally:
        await admin.close()


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, partitions: dict[str, int], timeout: float
) -> None:
    """KRaft acknowledges creation before the broker has loaded it; wait until it has."""
    deadline = time.monotonic() + timeout
    while True:
        topics = await admin.describe_topics(list(partitions))
        ready = {
            t["topic"]
            for t in topics
            if not t["error_code"]
            and len(t["partitions"]) == partitions.get(t["topic"], -1)
            and all(p["leader"] >= 0 and not p["error_code"] for p in t["partitions"])
        }
        if ready >= partitions.keys():
            return
        if time.monotonic() > deadline:
            raise BrokerError(
                f"topics without leaders after {timeout} s: {set(partitions) - ready}"
            )
        await asyncio.sleep(0.1)


def bootstrap_topics_blocking(
    kafka: Mapping[str, Any], specs: Sequence[TopicSpec] | None = None, *, timeout: float = 30.0
) -> list[str]:
    """`bootstrap_topics` for sync callers (CLI, sync fixtures)."""
    return _run_blocking(bootstrap_topics(kafka, specs, timeout=timeout))


# --------------------------------------------------------------------------- CLI


def _default_partitions() -> int:
    return int(os.environ.get("RAGBUS_PARTITIONS", DEFAULT_PARTITIONS))


def _broker_from_args(args: argparse.Namespace, *, stop_on_exit: bool = True) -> LocalKafka:
    return LocalKafka(
        args.data_dir,
        args.port,
        getattr(args, "controller_port", None),
        tls_port=getattr(args, "tls_port", None),
        stop_on_exit=stop_on_exit,
    )


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _cmd_fetch(args: argparse.Namespace) -> int:
    print(fetch_broker(args.cache_dir))
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    broker = _broker_from_args(args, stop_on_exit=not args.background)
    # SIGTERM behaves like Ctrl-C, so `kill` of the launcher stops the broker cleanly too. SIGINT
    # is set explicitly: a process started in the background of a non-interactive shell inherits
    # it ignored, and Python then installs no handler of its own.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _raise_keyboard_interrupt)
    broker.start()  # raises before anything is ours to stop (e.g. this data dir's broker runs)
    keep_running = False
    try:
        broker.wait_ready(args.timeout)
        if args.topics:
            created = bootstrap_topics_blocking(
                broker.client_options(), all_topics(args.partitions)
            )
            print(f"created topics: {', '.join(created) or '(all existed)'}")
        print(f"Kafka {KAFKA_VERSION} ready on {broker.bootstrap_servers} (pid {broker.pid()})")
        print(f"data: {broker.data_dir}  log: {broker.log_file}")
        if args.background:
            keep_running = True
            print(
                f"stop it with: python -m deploy.kafka.launcher stop --data-dir {broker.data_dir}"
            )
            return 0
        print("press Ctrl-C to stop")
        while broker.is_running():
            time.sleep(0.5)
        print(
            f"the broker exited on its own; last lines of {broker.log_file}:\n{broker.log_tail()}"
        )
        return 1
    except KeyboardInterrupt:
        print("stopping Kafka ...")
        return 0
    finally:
        if not keep_running:
            broker.stop()


def _cmd_stop(args: argparse.Namespace) -> int:
    broker = LocalKafka(args.data_dir)
    pid = broker.pid()
    if pid is None:
        print(f"no broker running from {broker.data_dir}")
        return 0
    broker.stop(args.timeout)
    print(f"stopped Kafka (pid {pid})")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    broker = LocalKafka(args.data_dir)
    pid = broker.pid()
    if pid is None:
        print(f"not running (data dir {broker.data_dir})")
        return 1
    listeners = "?"
    with contextlib.suppress(OSError):
        for line in broker.properties_file.read_text().splitlines():
            if line.startswith("advertised.listeners="):
                listeners = line.partition("=")[2]
    print(f"running: pid {pid}, {listeners}, data dir {broker.data_dir}")
    return 0


def _cmd_bootstrap(args: argparse.Namespace) -> int:
    servers = args.bootstrap_servers or os.environ.get(
        "RAGBUS_KAFKA_BOOTSTRAP", f"{HOST}:{default_port()}"
    )
    try:
        kafka = KafkaSettings(kafka_bootstrap=servers).kafka_options()
        created = bootstrap_topics_blocking(kafka, all_topics(args.partitions))
    except Exception as exc:
        print(f"error: could not bootstrap topics on {servers}: {exc!r}", file=sys.stderr)
        return 1
    print(f"created topics: {', '.join(created) or '(all existed)'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The CLI: fetch, start, stop, status, bootstrap."""
    parser = argparse.ArgumentParser(
        prog="python -m deploy.kafka.launcher", description="Local Apache Kafka for ragbus."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    fetch = sub.add_parser("fetch", help="resolve the broker jars into the cache")
    fetch.add_argument("--cache-dir", type=Path, default=None)
    fetch.set_defaults(func=_cmd_fetch)

    start = sub.add_parser("start", help="start the broker (foreground until Ctrl-C)")
    start.add_argument("--data-dir", type=Path, default=None)
    start.add_argument("--port", type=int, default=None)
    start.add_argument("--controller-port", type=int, default=None)
    start.add_argument("--tls-port", type=int, default=None, help="default: port+2")
    start.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for ready")
    start.add_argument("--background", action="store_true", help="return once ready")
    start.add_argument(
        "--no-topics", dest="topics", action="store_false", help="skip the topic bootstrap"
    )
    start.add_argument("--partitions", type=int, default=_default_partitions())
    start.set_defaults(func=_cmd_start)

    stop = sub.add_parser("stop", help="stop a background broker through its pid file")
    stop.add_argument("--data-dir", type=Path, default=None)
    stop.add_argument("--timeout", type=float, default=20.0)
    stop.set_defaults(func=_cmd_stop)

    status = sub.add_parser("status", help="exit 0 when the data dir's broker runs")
    status.add_argument("--data-dir", type=Path, default=None)
    status.set_defaults(func=_cmd_status)

    boot = sub.add_parser("bootstrap", help="create the ragbus topics (idempotent)")
    boot.add_argument("--bootstrap-servers", default=None)
    boot.add_argument("--partitions", type=int, default=_default_partitions())
    boot.set_defaults(func=_cmd_bootstrap)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m deploy.kafka.launcher`."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # connection retries are expected
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
