"""What every parser shares: the failure, the limits, the result, format detection and the
normalisation that makes equal content equal text whatever its source format."""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath


class UnreadableDocument(ValueError):
    """A permanent, user-facing failure: retrying the same bytes can never succeed.

    `str(exc)` and `exc.reason` are the same short sentence, fit for a status page.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ExtractedText:
    """Normalised text of one document plus what little metadata the splitter can use."""

    text: str
    title: str | None = None
    pages: int | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """How much one document may make the parsers hold: past a limit the document is refused
    with the limit in the reason, before it can exhaust the chunker's memory or time."""

    max_text_chars: int = 10_000_000  # ~2.5 M tokens, ~10,000 chunks
    max_pdf_pages: int = 2_000
    # A DOCX is a zip: its central directory says what it would inflate to, before inflating.
    max_docx_uncompressed_bytes: int = 200 * 1024 * 1024
    max_docx_ratio: int = 200  # real OOXML parts compress ~5-30x; zero-filled bombs ~1000x
    max_docx_members: int = 10_000


DEFAULT_LIMITS = Limits()


def check_length(chars: int, limits: Limits) -> None:
    if chars > limits.max_text_chars:
        raise UnreadableDocument(
            f"document text is over the {limits.max_text_chars:,}-character limit; split it"
            " into smaller files"
        )


def describe(exc: BaseException) -> str:
    """An exception as one short line for a reason; its type when it has no message."""
    message = " ".join(str(exc).split())[:200]
    return message or type(exc).__name__


# --------------------------------------------------------------------------- format detection

_EXTENSIONS: dict[str, str] = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".pdf": "pdf",
    ".docx": "docx",
}

_CONTENT_TYPES: dict[str, str] = {
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
    "application/x-pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
}

OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Compound File: .doc/.xls, encrypted .docx
# Binary formats that a user may upload under the wrong name, by their first bytes.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (OLE_SIGNATURE, "an old-style Office file (.doc, .xls, .ppt, or a password-protected .docx)"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x7fELF", "a program (ELF executable)"),
)


def content_kind(data: bytes) -> str | None:
    """What the bytes are by their signature ("a PNG image"), for a reason that says why a
    file's name and content disagree; None for anything without a known signature."""
    for signature, kind in _SIGNATURES:
        if data.startswith(signature):
            return "a DOCX document" if kind == "a ZIP archive" and _looks_like_docx(data) else kind
    return None


def _looks_like_docx(data: bytes) -> bool:
    if not data.startswith(b"PK\x03\x04"):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return "word/document.xml" in archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def _sniff(data: bytes) -> str | None:
    """Recognise PDF, DOCX and HTML by content, for uploads without a usable name or type."""
    head = data[:1024]
    if b"%PDF-" in head:
        return "pdf"
    if _looks_like_docx(data):
        return "docx"
    lowered = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if lowered.startswith((b"<!doctype html", b"<html")) or b"<html" in lowered[:512]:
        return "html"
    return None


def _is_utf8_text(data: bytes) -> bool:
    if b"\x00" in data[:4096]:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def detect_format(data: bytes, filename: str, content_type: str | None) -> str:
    """Extension first (most reliable from users), then the declared type, then magic bytes."""
    suffix = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime in _CONTENT_TYPES:
        return _CONTENT_TYPES[mime]
    sniffed = _sniff(data)
    if sniffed is not None:
        return sniffed
    generic = mime in {"", "application/octet-stream"}
    if not suffix and generic and _is_utf8_text(data):  # e.g. a bare "README"
        return "text"
    if suffix:
        raise UnreadableDocument(f"unsupported file type '{suffix}'")
    if not generic:
        raise UnreadableDocument(f"unsupported content type '{mime}'")
    raise UnreadableDocument("unsupported file type (unrecognised binary content)")


# --------------------------------------------------------------------------- normalisation

LINE_BREAKS = re.compile("\r\n|[\r\x0b\x0c\x85\u2028\u2029]")
# C0/C1 controls (but \n and \t), and invisible format characters that only add noise. ZWJ and
# ZWNJ (U+200C/D) are kept: Persian, Indic scripts and emoji need them.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u00ad\u200b\u200e\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u2069\ufeff\ufffd]"
)
# NFKC turns standalone spacing accents (U+00B4, U+02D8...) into space + combining mark, which
# in PDF output splits words ("O ̆guz"); such stray accents carry nothing, so they go.
_STRAY_ACCENT = re.compile("[ \u00a0][\u0300-\u036f]+")
_HSPACE = re.compile(r"[^\S\n]+")
_SPACE_AROUND_NEWLINE = re.compile(r" ?\n ?")
_BLANK_LINES = re.compile(r"\n{3,}")
# An inlined image's base64 text: thousands of characters that are not words.
DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=\s]{64,}")


def normalise(text: str) -> str:
    """Canonical text so equal content chunks and embeds the same whatever its source format.

    NFKC folds compatibility forms (ligatures such as "ﬁ" from PDFs, full-width letters, no-break
    spaces) and composes Hangul jamo, while leaving every script's letters intact.
    """
    text = LINE_BREAKS.sub("\n", text)
    text = unicodedata.normalize("NFKC", text)
    text = _STRAY_ACCENT.sub("", text)
    text = _INVISIBLE.sub("", text)
    text = _HSPACE.sub(" ", text)
    text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


_FILENAME_TITLE = re.compile(
    r"^(?:Microsoft (?:Word|PowerPoint) - )?\S+\.(?:pdf|docx?|html?|jpe?g|png|tiff?|txt|rtf|odt)$",
    re.IGNORECASE,
)


def clean_title(title: str | None) -> str | None:
    """One line, or None when the "title" is only a file name left by the authoring tool."""
    if not title:
        return None
    cleaned = " ".join(normalise(title).split())[:300]
    if not cleaned or _FILENAME_TITLE.match(cleaned):
        return None
    return cleaned
