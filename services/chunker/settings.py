"""Chunker settings."""

from functools import cache

from pydantic import AliasChoices, Field

from contracts.events import GenerationPlan
from ragbus.settings import BlobSettings, ServiceSettings

from .parsers import Limits
from .sandbox import SandboxLimits

MIB = 1024 * 1024


class ChunkerSettings(ServiceSettings, BlobSettings):
    """The broker, the HTTP shell, the blobs it reads; and how it parses and splits."""

    port: int = Field(default=8085, validation_alias=AliasChoices("RAGBUS_CHUNKER_PORT"))
    max_tokens: int = Field(
        default=256, ge=16, le=512, description="a chunk's model tokens, [CLS] and [SEP] included"
    )
    overlap_tokens: int = Field(default=32, ge=0)
    chunks_per_event: int = Field(default=64, ge=1, description="chunks in one chunks.ready event")
    max_blob_bytes: int = Field(default=100 * MIB, ge=1)
    # What one document may make the parsers hold; past a limit it is FAILED with the limit.
    max_text_chars: int = Field(default=10_000_000, ge=1, description="extracted characters")
    max_pdf_pages: int = Field(default=2_000, ge=1)
    max_docx_uncompressed_mb: int = Field(
        default=200, ge=1, description="a DOCX's declared uncompressed size (zip bombs)"
    )
    max_docx_ratio: int = Field(
        default=200, ge=1, description="compression ratio of any DOCX part over 1 MiB"
    )
    max_docx_members: int = Field(default=10_000, ge=1, description="parts in one DOCX")
    # Parsing runs in worker processes, so a hostile file cannot crash, hang or starve the
    # chunker: past these a document is FAILED and its worker replaced.
    extract_timeout_s: float = Field(default=180.0, gt=0, description="per document")
    extract_memory_mb: int = Field(default=2048, ge=64, description="per worker process")
    extract_workers: int = Field(default=1, ge=1)

    def split(self, plan: GenerationPlan | None = None) -> dict[str, int]:
        """The split's options, as `chunk_document` takes them: a generation's plan overrides
        the chunk size and overlap it names."""
        chunk_tokens = plan.chunk_tokens if plan else None
        overlap = plan.overlap if plan else None
        return {
            "max_tokens": chunk_tokens if chunk_tokens is not None else self.max_tokens,
            "overlap_tokens": overlap if overlap is not None else self.overlap_tokens,
            "chunks_per_event": self.chunks_per_event,
        }

    def limits(self) -> Limits:
        return Limits(
            max_text_chars=self.max_text_chars,
            max_pdf_pages=self.max_pdf_pages,
            max_docx_uncompressed_bytes=self.max_docx_uncompressed_mb * MIB,
            max_docx_ratio=self.max_docx_ratio,
            max_docx_members=self.max_docx_members,
        )

    def sandbox_limits(self) -> SandboxLimits:
        return SandboxLimits(
            timeout_s=self.extract_timeout_s,
            memory_bytes=self.extract_memory_mb * MIB,
        )


@cache
def get_settings() -> ChunkerSettings:
    return ChunkerSettings()
