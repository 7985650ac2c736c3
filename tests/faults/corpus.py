"""The fault suite's documents, and what the index must hold once they are in.

The expectation is computed from the documents themselves with the ingest's and the chunker's
own pure transforms (file name, document id, version, chunk split), never read back from a
running ragbus: a point that is missing or extra cannot hide behind a status that agrees with it.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.ids import sha256_of
from ragbus.adapters.embedding.model_files import load_tokenizer
from ragbus_ops.eval.datasets import Document, load_squad
from services.chunker.settings import ChunkerSettings
from services.chunker.transform import chunk_document
from services.ingest.transform import clean_filename, uploaded_event

REPO = Path(__file__).resolve().parents[2]
SQUAD_DEV = REPO.parent / "shared" / "data" / "squad" / "dev-v1.1.json"


@dataclass(frozen=True)
class Expected:
    """One uploaded document as the index must end up holding it: exactly these point ids."""

    document_id: str
    version: str
    chunk_ids: frozenset[str]


@dataclass(frozen=True)
class Slice:
    """The documents one fault is answered for: a tenant of their own, uploaded together."""

    fault: str
    tenant: str
    documents: Sequence[Document]
    expected: dict[str, Expected]

    @property
    def expected_points(self) -> int:
        return sum(len(e.chunk_ids) for e in self.expected.values())


def squad_paragraphs(path: Path = SQUAD_DEV) -> list[Document]:
    """Every SQuAD v1.1 dev paragraph as a short text document (2,067; 1 chunk each mostly)."""
    return load_squad(path).documents


def title_of(document: Document) -> str:
    """The upload's title: the file name without `.txt`, which the ingest adds back."""
    return document.filename.removesuffix(".txt")


def upload_body(documents: Iterable[Document]) -> dict[str, Any]:
    """`POST /v1/documents` JSON for `documents`."""
    return {
        "documents": [{"text": d.text, "title": title_of(d), "metadata": {}} for d in documents]
    }


def make_slice(fault: str, tenant: str, documents: Sequence[Document], **chunking: int) -> Slice:
    """The slice, with every document's id, version and point ids as ragbus must derive them
    (the chunker's settings come from the same environment the service processes get;
    `chunking` overrides its `max_tokens` and `overlap_tokens`, as a generation's plan does)."""
    settings = ChunkerSettings(**chunking)
    tokenizer = load_tokenizer(max_tokens=0, pad=False)  # the chunker's, as in its main
    expected = {}
    for document in documents:
        data = document.text.encode()
        # The ingest names a JSON text document "<title>.txt", as `_read_json` does.
        event = uploaded_event(
            tenant_id=tenant,
            filename=clean_filename(f"{title_of(document)}.txt"),
            blob_uri="file:///not-read",
            sha256=sha256_of(data),
            size_bytes=len(data),
            content_type="text/plain",
            title=title_of(document),
            metadata={},
        )
        batches = chunk_document(event, data, tokenizer, **settings.split())
        assert event.version is not None
        expected[event.document_id] = Expected(
            event.document_id,
            event.version,
            frozenset(chunk.chunk_id for batch in batches for chunk in batch.chunks),
        )
    return Slice(fault, tenant, documents, expected)
