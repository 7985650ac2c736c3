"""The bus as a trust boundary, against the running stack: a producer signed in as tenant
`mallory` can write only its own upload topic, and what it writes there can neither add to,
replace, delete nor read anything of another tenant (`default`, whose documents come over
HTTP). The README's kcat example publishes a document as it says."""

import asyncio
import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import TopicAuthorizationFailedError

from contracts.ids import document_id
from contracts.topics import DOCUMENT_STATUS, DOCUMENT_UPLOADED, tenant_uploads
from ragbus_ops.cli import main as ragbus
from tests.bus import read_all
from tests.conftest import STARTED

from .conftest import REPO, Stack
from .helpers import long_text, query, status, upload, wait_final

pytestmark = pytest.mark.e2e

ATTACKER = "mallory"
VICTIM = "default"  # the tenant of the HTTP uploads: the stack runs without API keys


@pytest.fixture(scope="module")
def attacker(stack: Stack, kafka_broker: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """aiokafka options signed in as the attacker's tenant principal, made by the CLI."""
    secret = tmp_path_factory.mktemp("mallory") / "mallory.secret"
    made = ragbus(
        ["tenants", "add", ATTACKER, "--password-file", str(secret), "--bootstrap", kafka_broker]
    )
    assert made == 0
    return {
        "bootstrap_servers": kafka_broker,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": f"tenant-{ATTACKER}",
        "sasl_plain_password": secret.read_text().strip(),
    }


async def _send(options: dict, topic: str, value: dict[str, Any] | bytes, key: str) -> None:
    body = value if isinstance(value, bytes) else orjson.dumps(value)
    async with AIOKafkaProducer(**options, acks="all") as producer:
        await producer.send_and_wait(topic, body, key=key.encode())


async def test_a_tenant_principal_writes_its_own_upload_topic_and_nothing_else(attacker):
    forged = {"blob_uri": "file:///etc/hosts", "filename": "x.md", "tenant_id": VICTIM}
    for topic in (DOCUMENT_UPLOADED, tenant_uploads(VICTIM), DOCUMENT_STATUS):
        with pytest.raises(TopicAuthorizationFailedError):
            await _send(attacker, topic, forged, "x.md")
    # Nor may it read the corpus, where the blob URIs of every tenant's documents are.
    consumer = AIOKafkaConsumer(DOCUMENT_UPLOADED, **attacker, auto_offset_reset="earliest")
    with pytest.raises(TopicAuthorizationFailedError):
        await consumer.start()
        await consumer.getmany(timeout_ms=5000)
    await consumer.stop()
    await _send(attacker, tenant_uploads(ATTACKER), {"kind": "deleted", "filename": "x.md"}, "x")


def bus_states(bootstrap: str, ids: set[str]) -> dict[str, dict[str, Any]]:
    """The latest status update of each document of `ids` on `document.status`."""
    latest = {}
    for update in asyncio.run(read_all(bootstrap, [DOCUMENT_STATUS])):
        if isinstance(update, dict) and update.get("document_id") in ids:
            latest[update["document_id"]] = update
    return latest


def wait_on_bus(
    bootstrap: str, wanted: dict[str, str], timeout: float = 300
) -> dict[str, dict[str, Any]]:
    """Poll until each document of `wanted` is in its wanted state on the bus."""
    deadline = time.monotonic() + timeout
    while True:
        states = bus_states(bootstrap, set(wanted))
        if all(states.get(d, {}).get("state") == s for d, s in wanted.items()):
            return states
        if time.monotonic() > deadline:
            raise AssertionError(f"not as wanted {wanted}: {states}")
        time.sleep(2)


def test_a_tenant_neither_adds_to_replaces_deletes_nor_reads_another_tenants_documents(
    stack: Stack, kafka_broker: str, attacker: dict, tmp_path: Path
) -> None:
    victim_text = long_text("sea otters", 3)
    [accepted] = upload(stack, [("shared-name.md", victim_text)])
    victim_id = accepted["document_id"]
    before = wait_final(stack, [victim_id])[victim_id]
    assert before["state"] == "INDEXED"
    digest = hashlib.sha256(victim_text).hexdigest()
    [victim_blob] = (stack.data_dir / "blobs" / "tenants").glob(f"*/*/{digest}")

    own = tmp_path / "zebracorn.md"
    own.write_bytes(long_text("zebracorns", 3))
    topic = tenant_uploads(ATTACKER)

    async def publish() -> None:
        # Same file name as the victim's document: it becomes the attacker's own document.
        await _send(attacker, topic, {"blob_uri": own.as_uri(), "filename": "shared-name.md"}, "s")
        # The victim's blob, named by its path: the chunker refuses it for this tenant.
        await _send(
            attacker, topic, {"blob_uri": victim_blob.as_uri(), "filename": "stolen.md"}, "t"
        )
        # A tenant and a document id written into the event: refused, in the attacker's tenant.
        forged = {
            "blob_uri": own.as_uri(),
            "filename": "inject.md",
            "tenant_id": VICTIM,
            "document_id": victim_id,
        }
        await _send(attacker, topic, forged, "i")
        # Deleting "shared-name.md" deletes the attacker's document of that name only.
        await _send(attacker, topic, {"kind": "deleted", "filename": "shared-name.md"}, "s")

    asyncio.run(publish())
    ids = {
        name: document_id(ATTACKER, name) for name in ("shared-name.md", "stolen.md", "inject.md")
    }
    states = wait_on_bus(
        kafka_broker,
        {
            ids["shared-name.md"]: "DELETED",
            ids["stolen.md"]: "FAILED",
            ids["inject.md"]: "FAILED",
        },
    )
    assert all(states[i]["tenant_id"] == ATTACKER for i in ids.values())
    assert "another tenant" in states[ids["stolen.md"]]["reason"]
    assert "tenant_id" in states[ids["inject.md"]]["reason"]
    assert document_id(VICTIM, "inject.md") not in bus_states(
        kafka_broker, {document_id(VICTIM, "inject.md")}
    )

    after = status(stack, victim_id)
    assert after is not None
    assert (after["state"], after["version"]) == ("INDEXED", before["version"])
    assert any(c["source"] == "shared-name.md" for c in query(stack, "sea otters handbook"))
    assert not any("zebracorn" in c["text"].lower() for c in query(stack, "zebracorns handbook"))


def _readme_kcat_example() -> str:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
    [example] = [block for block in blocks if "kcat -P" in block]
    return example


def test_the_readme_kcat_example_publishes_a_document(
    stack: Stack, kafka_broker: str, tmp_path: Path
) -> None:
    """Run the README's lines as they are, but for the session's broker and a file of ours."""
    if subprocess.run(["sh", "-c", "command -v kcat"], capture_output=True).returncode:
        pytest.fail("kcat is not installed (.ci/run installs Debian's kcat)")
    broker = STARTED[kafka_broker]
    handbook = tmp_path / "handbook.md"
    handbook.write_bytes(long_text("kcat publishing", 2))
    script = (
        _readme_kcat_example()
        .replace("127.0.0.1:9094", broker.tls_servers)
        .replace("file:///srv/docs/handbook.md", handbook.as_uri())
    )
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "RAGBUS_KAFKA_BOOTSTRAP": kafka_broker,
        "RAGBUS_KAFKA_DATA_DIR": str(broker.data_dir),
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    published = document_id("acme", "handbook.md")
    states = wait_on_bus(kafka_broker, {published: "INDEXED"})
    assert states[published]["tenant_id"] == "acme"
