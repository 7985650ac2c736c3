"""The benchmark's corpora, as files to upload and as the chunk texts the embedder will see.

- `k8s`: the 545 Kubernetes documentation pages (and their section index pages) of
  ../shared/data/k8s-docs, as `ragbus ingest` would send them.
- `large`: ≥ 20,000 chunks: every SQuAD v1.1 dev paragraph as a text file, and further copies of
  the Kubernetes pages under other names (other documents to ragbus: other ids, other points).

The chunk texts come from the chunker's own transform with the chunker's settings, so the
embedder alone (`limit`) embeds exactly what the pipeline embeds.
"""

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from contracts.events import DocumentUploaded
from ragbus.adapters.embedding.model_files import load_tokenizer
from ragbus_ops.client import LocalFile, collect_files
from ragbus_ops.eval.datasets import load_squad
from services.chunker.settings import ChunkerSettings
from services.chunker.transform import chunk_document

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
K8S_DOCS = SHARED / "k8s-docs"
SQUAD_DEV = SHARED / "squad" / "dev-v1.1.json"


@dataclass(frozen=True)
class Corpus:
    name: str
    files: list[LocalFile]


def k8s(pages: int | None = None) -> Corpus:
    """The Kubernetes pages (the first `pages` of them, for a quick run)."""
    files, _ = collect_files([K8S_DOCS])
    return Corpus("k8s-docs" if pages is None else f"k8s-docs[:{pages}]", files[:pages])


def large(pages: Corpus, copies: int, scratch: Path) -> Corpus:
    """SQuAD dev paragraphs (written under `scratch`) and `copies` renamed copies of the
    Kubernetes `pages`."""
    files = [
        LocalFile(page.path, f"copy-{n}/{page.name}")
        for n in range(2, copies + 2)
        for page in pages.files
    ]
    for document in load_squad(SQUAD_DEV).documents:
        path = scratch / document.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(document.text)
        files.append(LocalFile(path, document.filename))
    return Corpus(f"squad-dev + {copies} copies of k8s-docs", files)


def chunk_texts(files: Sequence[LocalFile]) -> list[list[str]]:
    """Each file's chunk texts, split as the chunker splits them (unreadable files left out)."""
    settings = ChunkerSettings()
    tokenizer = load_tokenizer(max_tokens=0, pad=False)
    texts = []
    for file in files:
        event = DocumentUploaded(
            document_id=file.name, tenant_id="bench", blob_uri="file:///unused", filename=file.name
        )
        batches = chunk_document(event, file.path.read_bytes(), tokenizer, **settings.split())
        texts.append([chunk.text for batch in batches for chunk in batch.chunks])
    return texts


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="ragbus-bench-")
