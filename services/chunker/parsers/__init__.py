"""Turn an uploaded file's bytes into clean plain text for the splitter.

Everything here is pure (bytes in, text out) so the chunker service can run it on any input
without crashing: a file that cannot be read raises `UnreadableDocument` with a reason that is
shown to the document's owner as the FAILED status, never a stack trace. One module per format
(`txt`, `markdown`, `html`, `pdf`, `docx`), each with `extract(data, limits)`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from .common import (
    DEFAULT_LIMITS,
    ExtractedText,
    Limits,
    UnreadableDocument,
    check_length,
    describe,
    detect_format,
    normalise,
)

__all__ = [
    "DEFAULT_LIMITS",
    "ExtractedText",
    "Limits",
    "UnreadableDocument",
    "extract_text",
    "normalise",
    "preload",
]

_Extractor = Callable[[bytes, Limits], ExtractedText]

# Format modules load on first use: their libraries cost the chunker's main process, which
# only imports this package for its names and never parses, 0.23 s and 39 MB (measured).
_MODULES = {"text": "txt", "markdown": "markdown", "html": "html", "pdf": "pdf", "docx": "docx"}


def _extractor(kind: str) -> _Extractor:
    extract: _Extractor = importlib.import_module(f".{_MODULES[kind]}", __name__).extract
    return extract


def preload() -> None:
    """Load every format's parser now, so that a worker's first document does not wait."""
    for kind in _MODULES:
        _extractor(kind)


def extract_text(
    data: bytes, filename: str, content_type: str | None, limits: Limits = DEFAULT_LIMITS
) -> ExtractedText:
    """Extract normalised text from a document, or raise `UnreadableDocument` saying why.

    Unreadable input is an expected outcome, not a bug: the reason goes to the document's
    status, so it is worded for the person who uploaded the file. Whatever a parser library
    raises on a hostile file becomes `UnreadableDocument` too; nothing else escapes.
    """
    if not data:
        raise UnreadableDocument("file is empty")
    kind = detect_format(data, filename, content_type)
    try:
        extracted = _extractor(kind)(data, limits)
    except UnreadableDocument:
        raise
    except MemoryError as exc:
        raise UnreadableDocument(f"the {kind} file needs too much memory to read") from exc
    except RecursionError as exc:
        raise UnreadableDocument(f"the {kind} file is nested too deeply to read") from exc
    except Exception as exc:  # a parser library's bug or a hostile file: the reason, not a trace
        raise UnreadableDocument(f"could not read the {kind} file: {describe(exc)}") from exc
    if not extracted.text:
        raise UnreadableDocument("no extractable text")
    check_length(len(extracted.text), limits)
    return extracted
