import pytest

from contracts.events import DocumentUploaded
from contracts.ids import chunk_id, sha256_of
from ragbus.adapters.embedding.model_files import load_tokenizer
from services.chunker.parsers import Limits, UnreadableDocument
from services.chunker.transform import chunk_document

pytestmark = pytest.mark.integration

TEXT = "\n\n".join(
    f"Paragraph {n}. " + "Kafka keeps events ordered per partition. " * 12 for n in range(20)
).encode()


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(max_tokens=0, pad=False)


def uploaded(data: bytes, **fields):
    return DocumentUploaded(
        document_id="d",
        tenant_id="t",
        blob_uri="file:///x",
        filename="notes.md",
        sha256=sha256_of(data),
        **fields,
    )


def chunk(event, data, tokenizer, per_event=4, **limits):
    return chunk_document(
        event,
        data,
        tokenizer,
        max_tokens=256,
        overlap_tokens=32,
        chunks_per_event=per_event,
        **limits,
    )


def test_batches_carry_all_chunks_in_order_with_deterministic_ids(tokenizer):
    batches = chunk(uploaded(TEXT), TEXT, tokenizer)
    chunks = [c for batch in batches for c in batch.chunks]
    total = batches[0].total_chunks
    assert total == len(chunks) > 4
    assert [b.batch for b in batches] == list(range(len(batches)))
    assert all(len(b.chunks) <= 4 and b.total_chunks == total for b in batches)
    version = sha256_of(TEXT)[:16]
    assert [c.chunk_id for c in chunks] == [chunk_id("d", version, n) for n in range(total)]
    assert all(0 < c.token_count <= 256 for c in chunks)
    assert [c.text for c in chunks] == [
        c.text for b in chunk(uploaded(TEXT), TEXT, tokenizer) for c in b.chunks
    ]


def test_version_is_derived_from_content_when_the_producer_leaves_it_out(tokenizer):
    event = DocumentUploaded(document_id="d", tenant_id="t", blob_uri="file:///x", filename="a.txt")
    batches = chunk(event, b"hello world", tokenizer)
    assert batches[0].version == sha256_of(b"hello world")[:16]
    assert batches[0].source == "a.txt"


def test_bytes_that_do_not_match_the_event_are_refused(tokenizer):
    with pytest.raises(UnreadableDocument, match="does not match"):
        chunk(uploaded(b"original"), b"tampered", tokenizer)


def test_a_document_without_text_is_refused(tokenizer):
    with pytest.raises(UnreadableDocument):
        chunk(uploaded(b"   \n\n  "), b"   \n\n  ", tokenizer)


def test_the_parser_limits_given_are_the_ones_applied(tokenizer):
    with pytest.raises(UnreadableDocument, match="over the 100-character limit"):
        chunk(uploaded(TEXT), TEXT, tokenizer, limits=Limits(max_text_chars=100))
