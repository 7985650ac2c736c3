"""PDF text layers, page by page; refuses truncated, encrypted and image-only files."""

from __future__ import annotations

import io
import re

from pypdf import PasswordType, PdfReader

from .common import (
    ExtractedText,
    Limits,
    UnreadableDocument,
    check_length,
    clean_title,
    content_kind,
    describe,
    normalise,
)

# Fewer letters/digits than this per page means the pages are images (a scan without OCR).
_MIN_ALNUM_PER_PAGE = 5
# Typeset PDFs hyphenate at line ends ("ef-\nficient"); rejoin lower-case word halves.
_HYPHENATED_BREAK = re.compile(r"(?<=[^\W\d_])-\n(?=[^\W\d_])")


def _join_hyphenated(text: str) -> str:
    """Rejoin a word split at a line end ("ef-\nficient"), unless the next half is Capitalised."""

    def join(match: re.Match[str]) -> str:
        return "" if text[match.end()].islower() else match.group(0)

    return _HYPHENATED_BREAK.sub(join, text)


def _check_envelope(data: bytes) -> None:
    """A PDF starts with `%PDF-` (within 1 KiB, as readers allow) and ends with `%%EOF` (a
    little trailing junk allowed). Without the end it is truncated: refused rather than
    indexed from the pages a lenient reader happens to recover."""
    if b"%PDF-" not in data[:1024]:
        kind = content_kind(data)
        raise UnreadableDocument(
            f"not a PDF file: the content is {kind} (wrong file name?)"
            if kind
            else "not a PDF file: it does not start with a %PDF- header"
        )
    if b"%%EOF" not in data[-2048:]:
        raise UnreadableDocument(
            "corrupt or truncated PDF: it does not end with %%EOF (incomplete upload or copy?)"
        )


def _open(reader: PdfReader) -> None:
    """Only the empty user password is tried, as every PDF viewer does: such files are merely
    permission-restricted. Guessing real passwords is not ours to do."""
    if not reader.is_encrypted:
        return
    try:
        opened = reader.decrypt("") != PasswordType.NOT_DECRYPTED
    except Exception:
        opened = False
    if not opened:
        raise UnreadableDocument("PDF is encrypted (password required)")


def _title(reader: PdfReader) -> str | None:
    try:
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except Exception:
        return None
    return str(title) if title else None


def extract(data: bytes, limits: Limits) -> ExtractedText:
    _check_envelope(data)
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
    except Exception as exc:  # pypdf raises many types on damaged input
        raise UnreadableDocument(f"corrupt or truncated PDF: {describe(exc)}") from exc
    try:
        _open(reader)
        page_count = len(reader.pages)
        if page_count > limits.max_pdf_pages:
            raise UnreadableDocument(
                f"PDF has {page_count:,} pages (limit {limits.max_pdf_pages:,}); split it"
            )
        texts: list[str] = []
        failures: list[Exception] = []
        chars = 0
        for page in reader.pages:
            try:
                texts.append(page.extract_text() or "")
            except Exception as exc:  # one bad page must not lose the others
                failures.append(exc)
                continue
            chars += len(texts[-1])
            check_length(chars, limits)
        title = _title(reader)
    except UnreadableDocument:
        raise
    except Exception as exc:
        raise UnreadableDocument(f"corrupt or truncated PDF: {describe(exc)}") from exc
    text = _join_hyphenated(normalise("\n\n".join(texts)))
    letters = sum(1 for char in text if char.isalnum())
    if failures and letters == 0:
        raise UnreadableDocument(f"corrupt or truncated PDF: {describe(failures[0])}")
    if page_count == 0:
        raise UnreadableDocument("corrupt or truncated PDF: no pages")
    if letters < _MIN_ALNUM_PER_PAGE * page_count:
        raise UnreadableDocument("PDF has no text layer (scanned image; OCR is not supported)")
    return ExtractedText(text=text, title=clean_title(title), pages=page_count)
