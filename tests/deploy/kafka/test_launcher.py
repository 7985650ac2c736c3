"""The local broker launcher against a real Kafka: start, topics, traffic, stop, restart."""

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from contracts.topics import DOCUMENT_STATUS, DOCUMENT_UPLOADED, MAX_MESSAGE_BYTES, all_topics
from deploy.kafka.launcher import (
    BrokerError,
    LocalKafka,
    bootstrap_topics,
    fetch_broker,
    free_ports,
    new_cluster_id,
    render_server_properties,
)
from tests.bus import kafka_options

REPO = Path(__file__).resolve().parents[3]
PARTITIONS = 5  # not the broker's num.partitions (12), so the spec is what shows


async def _topic_partitions(servers: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(**kafka_options(servers))
    await admin.start()
    try:
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics()}
    finally:
        await admin.close()


async def _topic_configs(servers: str, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(**kafka_options(servers))
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    [resource] = response.to_object()["resources"]
    assert resource["error_code"] == 0, resource
    return {e["config_names"]: e["config_value"] for e in resource["config_entries"]}


async def _round_trip(servers: str, payload: bytes) -> None:
    """Produce one keyed message and read it back through a consumer group."""
    async with AIOKafkaProducer(
        **kafka_options(servers), max_request_size=MAX_MESSAGE_BYTES, acks="all"
    ) as producer:
        sent = await producer.send_and_wait(DOCUMENT_UPLOADED, payload, key=b"doc-1")
    consumer = AIOKafkaConsumer(
        DOCUMENT_UPLOADED,
        **kafka_options(servers),
        group_id="test-launcher",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_bytes=2 * MAX_MESSAGE_BYTES,
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
    )
    await consumer.start()
    try:
        message = await consumer.getone()
        await consumer.commit()  # needs the offsets topic, i.e. its replication factor of 1
    finally:
        await consumer.stop()
    assert (message.key, message.value) == (b"doc-1", payload)
    assert (message.partition, message.offset) == (sent.partition, sent.offset)


@pytest.mark.unit
def test_render_fills_every_placeholder(tmp_path: Path) -> None:
    text = render_server_properties(19092, 19093, tmp_path / "kraft", "s3cret", 19094, tmp_path)
    assert "{" not in text
    assert (
        "listeners=SASL_PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093,"
        "SSL://127.0.0.1:19094"
    ) in text
    assert "listener.name.ssl.ssl.client.auth=required" in text
    assert 'user_broker="s3cret"' in text
    assert "allow.everyone.if.no.acl.found=false" in text
    assert "controller.quorum.voters=1@127.0.0.1:19093" in text
    assert f"log.dirs={(tmp_path / 'kraft').resolve()}" in text
    assert f"message.max.bytes={MAX_MESSAGE_BYTES}" in text
    assert "auto.create.topics.enable=false" in text


@pytest.mark.unit
def test_cluster_ids_look_like_kafka_uuids() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(cid) == 22 and not cid.startswith("-") for cid in ids)


@pytest.mark.unit
def test_fetch_explains_a_missing_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither mvn nor java on it
    with pytest.raises(BrokerError, match=r"Maven \(`mvn`\) is needed"):
        fetch_broker(tmp_path / "libs")


@pytest.mark.integration
def test_fetch_is_cached() -> None:
    libs = fetch_broker()
    started = time.monotonic()
    assert fetch_broker() == libs
    assert time.monotonic() - started < 0.5
    assert any(libs.glob("kafka_2.13-4.1.0.jar"))
    assert any(libs.glob("log4j-slf4j-impl-*.jar"))


@pytest.mark.unit
def test_start_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = LocalKafka(tmp_path, port, free_ports(1)[0])
        with pytest.raises(BrokerError, match=f"127.0.0.1:{port} is already in use"):
            broker.start()
    assert not broker.is_running()


@pytest.mark.integration
async def test_broker_lifecycle(tmp_path: Path) -> None:
    data_dir = tmp_path / "kafka"
    specs = all_topics(PARTITIONS)
    names = [spec.name for spec in specs]
    port, controller_port, tls_port = free_ports(3)
    broker = LocalKafka(data_dir, port, controller_port, tls_port=tls_port)
    broker.start()
    try:
        await broker.wait_ready_async(timeout=60)
        servers = broker.bootstrap_servers

        assert await bootstrap_topics(kafka_options(servers), specs) == names
        partitions = await _topic_partitions(servers)
        assert {name: partitions[name] for name in names} == {s.name: s.partitions for s in specs}
        for compacted in (DOCUMENT_STATUS, DOCUMENT_UPLOADED):  # the state, and the corpus
            configs = await _topic_configs(servers, compacted)
            assert configs["cleanup.policy"] == "compact"
            assert configs["max.message.bytes"] == str(MAX_MESSAGE_BYTES)

        assert (await _topic_configs(servers, DOCUMENT_UPLOADED))[
            "message.timestamp.type"
        ] == "LogAppendTime"  # uploads dated by the broker, not their producers

        await _round_trip(servers, os.urandom(3 * 1024 * 1024))  # beyond Kafka's 1 MiB default
        assert await bootstrap_topics(kafka_options(servers), specs) == []  # idempotent

        # A topic made before a spec changed gets the spec's configs at the next bootstrap.
        older = [
            spec if spec.name != DOCUMENT_UPLOADED else replace(spec, configs={}) for spec in specs
        ]
        await bootstrap_topics(kafka_options(servers), older)
        configs = await _topic_configs(servers, DOCUMENT_UPLOADED)
        assert configs["message.timestamp.type"] == "CreateTime"
        await bootstrap_topics(kafka_options(servers), specs)
        assert (await _topic_configs(servers, DOCUMENT_UPLOADED))[
            "message.timestamp.type"
        ] == "LogAppendTime"

        # A second handle on the same data dir (what `launcher stop` does) finds it by pid file.
        with pytest.raises(BrokerError, match="already running"):
            LocalKafka(data_dir, port, controller_port, tls_port=tls_port).start()
        LocalKafka(data_dir).stop()
        assert not broker.is_running()
        assert not broker.pid_file.exists()
    finally:
        broker.stop()

    # Restart through the CLI in the foreground, on other ports: the topics are still there,
    # and SIGINT (Ctrl-C) stops the broker cleanly.
    port, controller_port, tls_port = free_ports(3)
    cmd = [
        sys.executable, "-m", "deploy.kafka.launcher", "start", "--no-topics",
        "--data-dir", str(data_dir), "--port", str(port),
        "--controller-port", str(controller_port), "--tls-port", str(tls_port),
    ]  # fmt: skip
    cli = subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert cli.stdout is not None
        lines: list[str] = []
        while not any("ready on" in line for line in lines):
            line = cli.stdout.readline()
            assert line, f"launcher exited early:\n{''.join(lines)}"
            lines.append(line)
        servers = f"127.0.0.1:{port}"
        partitions = await _topic_partitions(servers)
        assert {name: partitions[name] for name in names} == {s.name: s.partitions for s in specs}
        assert await bootstrap_topics(kafka_options(servers), specs) == []

        restarted = LocalKafka(data_dir)
        assert restarted.is_running()
        cli.send_signal(signal.SIGINT)
        assert cli.wait(timeout=90) == 0
        assert not restarted.is_running()
    finally:
        if cli.poll() is None:
            cli.kill()
        LocalKafka(data_dir).stop()
        if cli.stdout is not None:
            cli.stdout.close()


@pytest.mark.integration
async def test_session_fixture_serves_every_topic(kafka_broker: str) -> None:
    expected = all_topics(int(os.environ.get("RAGBUS_TEST_PARTITIONS", "12")))
    partitions = await _topic_partitions(kafka_broker)
    assert {spec.name: partitions.get(spec.name) for spec in expected} == {
        spec.name: spec.partitions for spec in expected
    }


@pytest.mark.unit
def test_stop_without_a_broker_is_a_no_op(tmp_path: Path) -> None:
    started = time.monotonic()
    LocalKafka(tmp_path).stop()
    assert time.monotonic() - started < 1
