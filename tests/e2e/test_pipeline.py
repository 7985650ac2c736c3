"""Upload → chunks → vectors → index → query, through the real broker and real processes."""

import asyncio
import io
import subprocess
import sys
import time

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from pypdf import PdfWriter

from contracts.ids import sha256_of, version_of
from contracts.topics import DOCUMENT_UPLOADED, dlq
from tests.bus import kafka_options

from .helpers import (
    external_event,
    index_points,
    long_text,
    publish_raw,
    query,
    status,
    upload,
    wait_final,
)

pytestmark = pytest.mark.e2e

PIPELINE = ["RECEIVED", "CHUNKING", "EMBEDDING", "INDEXING", "INDEXED"]


async def test_an_upload_shows_every_transition_and_becomes_searchable(stack):
    states: list[str] = []
    target: dict[str, str] = {}
    ready = asyncio.Event()

    async def watch() -> None:
        async with (
            httpx.AsyncClient(timeout=None) as http,
            http.stream("GET", f"{stack.urls['status']}/v1/documents/stream") as response,
        ):
            event = None
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event == "ready":
                    ready.set()
                elif line.startswith("data:") and event == "state":
                    record = orjson.loads(line[5:])
                    if record["filename"] == "octopus.md":
                        states.append(record["state"])
                        if record["state"] in ("INDEXED", "FAILED"):
                            target.update(record)
                            return

    watcher = asyncio.create_task(watch())
    await asyncio.wait_for(ready.wait(), 30)
    text = (
        b"# Octopus\n\nThe octopus has three hearts and blue blood, and it can taste with its arms."
    )
    (accepted,) = await asyncio.to_thread(upload, stack, [("octopus.md", text)])
    assert accepted["status"] == "RECEIVED" and accepted["version"]
    await asyncio.wait_for(watcher, 300)
    assert states == PIPELINE
    assert target["chunks"] == target["indexed_chunks"] == 1
    assert set(target["timings_ms"]) == {"chunking", "embedding", "indexing", "total"}
    hits = query(stack, "How many hearts does an octopus have?")
    assert hits[0]["document_id"] == accepted["document_id"]
    assert "three hearts" in hits[0]["text"]


def test_json_text_documents_are_indexed(stack):
    response = httpx.post(
        f"{stack.urls['ingest']}/v1/documents",
        json={
            "documents": [
                {
                    "text": "Giraffes sleep less than two hours a day.",
                    "title": "giraffe facts",
                    "metadata": {"kind": "animal"},
                }
            ]
        },
    )
    assert response.status_code == 202
    (accepted,) = response.json()["documents"]
    assert (
        wait_final(stack, [accepted["document_id"]])[accepted["document_id"]]["state"] == "INDEXED"
    )
    assert query(stack, "how long do giraffes sleep")[0]["document_id"] == accepted["document_id"]


async def test_a_document_published_straight_onto_the_topic_is_indexed(stack, tmp_path):
    path = tmp_path / "external.txt"
    path.write_bytes(b"Platform team note: the quokka is a small marsupial from Rottnest Island.")
    event = external_event("external-quokka", path.as_uri(), "notes/external.txt")
    await publish_raw(
        stack.env["RAGBUS_KAFKA_BOOTSTRAP"], DOCUMENT_UPLOADED, [("external-quokka", event)]
    )
    record = (await asyncio.to_thread(wait_final, stack, ["external-quokka"]))["external-quokka"]
    assert record["state"] == "INDEXED" and record["chunks"] == 1
    assert query(stack, "Where does the quokka live?")[0]["document_id"] == "external-quokka"


def test_same_bytes_add_no_points_and_a_changed_file_replaces_its_chunks(stack):
    first = long_text("lighthouse", 12)
    (doc,) = upload(stack, [("guide/lighthouse.md", first)])
    done = wait_final(stack, [doc["document_id"]], {doc["document_id"]: doc["version"]})
    chunks_v1 = done[doc["document_id"]]["chunks"]
    assert chunks_v1 > 2
    points = index_points(stack)

    before = status(stack, doc["document_id"])
    (again,) = upload(stack, [("guide/lighthouse.md", first)])
    assert (again["document_id"], again["version"]) == (doc["document_id"], doc["version"])
    assert (again["unchanged"], again["status"]) == (True, "INDEXED")
    time.sleep(2)  # were anything re-processed, the record would have moved by now
    assert status(stack, doc["document_id"]) == before
    assert index_points(stack) == points

    (changed,) = upload(stack, [("guide/lighthouse.md", long_text("lighthouse keeper", 3))])
    assert changed["document_id"] == doc["document_id"] and changed["version"] != doc["version"]
    record = wait_final(stack, [doc["document_id"]], {doc["document_id"]: changed["version"]})
    chunks_v2 = record[doc["document_id"]]["chunks"]
    assert chunks_v2 < chunks_v1
    assert index_points(stack) == points - chunks_v1 + chunks_v2
    hits = query(stack, "lighthouse keeper handbook", top_k=20)
    assert {h["chunk_id"] for h in hits if h["document_id"] == doc["document_id"]}
    assert len([h for h in hits if h["document_id"] == doc["document_id"]]) == chunks_v2


def encrypted_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    writer.encrypt("secret")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_an_unreadable_file_fails_with_a_reason_and_the_stage_goes_on(stack):
    docs = upload(
        stack,
        [
            ("locked.pdf", encrypted_pdf()),
            ("broken.pdf", b"%PDF-1.7 garbage"),
            ("fine.txt", b"Walruses use their tusks to haul out onto ice."),
        ],
    )
    final = wait_final(stack, [d["document_id"] for d in docs])
    states = {final[d["document_id"]]["filename"]: final[d["document_id"]] for d in docs}
    assert states["locked.pdf"]["state"] == "FAILED"
    assert "encrypted" in states["locked.pdf"]["reason"]
    assert states["broken.pdf"]["state"] == "FAILED" and states["broken.pdf"]["reason"]
    assert states["fine.txt"]["state"] == "INDEXED"


async def test_an_invalid_event_goes_to_the_dlq_and_the_pipeline_goes_on(stack, tmp_path):
    bootstrap = stack.env["RAGBUS_KAFKA_BOOTSTRAP"]
    path = tmp_path / "after.txt"
    path.write_bytes(b"Narwhal tusks are teeth that can grow to three metres.")
    await publish_raw(
        bootstrap,
        DOCUMENT_UPLOADED,
        [
            ("bad-1", b"{not json"),
            (
                "bad-2",
                {
                    "schema_version": "7.0",
                    "document_id": "bad-2",
                    "tenant_id": "default",
                    "blob_uri": "file:///x",
                    "filename": "x.txt",
                },
            ),
            ("after", external_event("after", path.as_uri(), "after.txt")),
        ],
    )
    record = await asyncio.to_thread(wait_final, stack, ["after", "bad-2"])
    assert record["after"]["state"] == "INDEXED"
    assert record["bad-2"]["state"] == "FAILED" and "7.0" in record["bad-2"]["reason"]
    consumer = AIOKafkaConsumer(
        dlq(DOCUMENT_UPLOADED),
        **kafka_options(bootstrap),
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        letters = {}
        for _ in range(20):
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for message in records:
                    letters[message.key] = orjson.loads(message.value)
            if {b"bad-1", b"bad-2"} <= letters.keys():
                break
    finally:
        await consumer.stop()
    assert letters[b"bad-1"]["payload"] == "{not json"
    assert letters[b"bad-1"]["stage"] == "chunker"
    assert "schema_version" in letters[b"bad-2"]["error"]


def test_the_status_service_rebuilds_its_state_from_the_topic_after_a_restart(stack):
    (doc,) = upload(stack, [("restart.txt", b"Axolotls can regrow their limbs.")])
    before = wait_final(stack, [doc["document_id"]])[doc["document_id"]]
    stack.kill(("status",))
    stack.start(("status",))
    assert wait_final(stack, [doc["document_id"]], timeout=60)[doc["document_id"]] == before
    assert status(stack, doc["document_id"]) == before


def test_the_ingest_command_uploads_a_folder_and_follows_it_to_the_end(stack, tmp_path):
    folder = tmp_path / "handbook"
    folder.mkdir()
    for n in range(6):
        (folder / f"page{n}.md").write_text(f"# Page {n}\n\nPenguins page {n}: they cannot fly.")
    (folder / "image.png").write_bytes(b"\x89PNG")
    command = [
        *(sys.executable, "-m", "ragbus_ops", "ingest", str(folder)),
        *("--ingest-url", stack.urls["ingest"], "--status-url", stack.urls["status"]),
    ]
    env = {**stack.env, "COLUMNS": "400"}  # rich would wrap a long path over two lines
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 indexed (6 chunks), 0 failed" in result.stdout
    assert "skipped" in result.stdout and "image.png" in result.stdout
    # The same folder again: nothing to process, and the command says so and ends.
    again = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 indexed (0 chunks), 0 failed" in again.stdout and "6 unchanged" in again.stdout


async def test_a_producer_that_sends_no_version_still_gets_new_versions_indexed(stack, tmp_path):
    bootstrap = stack.env["RAGBUS_KAFKA_BOOTSTRAP"]
    path = tmp_path / "ext.txt"
    path.write_bytes(b"Version one: the capybara is the largest living rodent.")
    event = external_event("ext-versions", path.as_uri(), "ext.txt")
    await publish_raw(bootstrap, DOCUMENT_UPLOADED, [("ext-versions", event)])
    first = (await asyncio.to_thread(wait_final, stack, ["ext-versions"]))["ext-versions"]
    assert first["state"] == "INDEXED"
    second_bytes = b"Version two: capybaras are semi-aquatic and live in South America."
    path.write_bytes(second_bytes)
    await publish_raw(bootstrap, DOCUMENT_UPLOADED, [("ext-versions", {**event, "event_id": "2"})])
    version = version_of(sha256_of(second_bytes))
    final = await asyncio.to_thread(wait_final, stack, ["ext-versions"], {"ext-versions": version})
    assert final["ext-versions"]["state"] == "INDEXED" and version != first["version"]
    hits = [h for h in query(stack, "capybara", top_k=10) if h["document_id"] == "ext-versions"]
    assert [h["text"] for h in hits] == [second_bytes.decode()]
