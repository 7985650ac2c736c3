"""DOCX in body order (paragraphs and tables), headers and footers once; zip bombs refused from
the archive's directory before anything is inflated."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from typing import Any

import docx
from docx.table import Table, _Cell
from docx.text.paragraph import Paragraph

from .common import (
    OLE_SIGNATURE,
    ExtractedText,
    Limits,
    UnreadableDocument,
    clean_title,
    content_kind,
    describe,
    normalise,
)

_RATIO_CHECK_MIN_BYTES = 1024 * 1024  # small parts may compress well (repeated styles)
# An encrypted OOXML file is a Compound File holding an "EncryptedPackage" stream.
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def _size(count: int) -> str:
    return f"{count // (1024 * 1024)} MB" if count >= 1024 * 1024 else f"{count // 1024} KB"


def _check_envelope(data: bytes) -> None:
    """Name what a ".docx" that is not a zip really is: a password-protected DOCX, an old .doc,
    or another format altogether."""
    if data.startswith(b"PK"):
        return
    if data.startswith(OLE_SIGNATURE) and _ENCRYPTED_PACKAGE in data:
        raise UnreadableDocument("DOCX is encrypted (password protected): remove the password")
    if data.startswith(OLE_SIGNATURE):
        raise UnreadableDocument(
            "not a valid DOCX file: it is an old-style Office file (.doc): save it as .docx"
        )
    kind = content_kind(data)
    if kind is not None:
        raise UnreadableDocument(f"not a valid DOCX file: the content is {kind} (wrong file name?)")


def _check_archive(data: bytes, limits: Limits) -> None:
    """Refuse zip bombs from the central directory alone, before anything is inflated.

    zipfile never inflates a member beyond its declared size, so the declared sizes are a
    trustworthy upper bound for what python-docx will read.
    """
    _check_envelope(data)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise UnreadableDocument(f"not a valid DOCX file: {describe(exc)}") from exc
    if len(members) > limits.max_docx_members:
        raise UnreadableDocument(
            f"DOCX has {len(members)} parts (limit {limits.max_docx_members}); refusing a"
            " possible zip bomb"
        )
    total = sum(member.file_size for member in members)
    if total > limits.max_docx_uncompressed_bytes:
        raise UnreadableDocument(
            f"DOCX would expand to {_size(total)} when uncompressed (limit"
            f" {_size(limits.max_docx_uncompressed_bytes)}); refusing a possible zip bomb"
        )
    for member in members:
        if member.file_size < _RATIO_CHECK_MIN_BYTES:
            continue
        ratio = member.file_size / max(member.compress_size, 1)
        if ratio > limits.max_docx_ratio:
            raise UnreadableDocument(
                f"DOCX part '{member.filename}' has an implausible compression ratio"
                f" ({ratio:.0f}:1); refusing a possible zip bomb"
            )
    if not any(member.filename == "word/document.xml" for member in members):
        raise UnreadableDocument("not a valid DOCX file: no word/document.xml inside")


def _blocks(container: Any, parent: Any) -> Iterator[str]:
    """Body-order text blocks: a paragraph is a block, a table is one block of rows."""
    for child in container.iterchildren():
        tag = child.tag
        if tag == f"{_W}p":
            yield Paragraph(child, parent).text
        elif tag == f"{_W}tbl":
            yield "\n".join(_table_rows(Table(child, parent)))
        elif tag == f"{_W}sdt":  # content controls wrap ordinary paragraphs and tables
            content = child.find(f"{_W}sdtContent")
            if content is not None:
                yield from _blocks(content, parent)


def _table_rows(table: Any) -> Iterator[str]:
    """One line per row; physical cells only, so a merged cell is not repeated."""
    for tr in table._tbl.tr_lst:
        cells: list[str] = []
        for tc in tr.tc_lst:
            if _is_merge_continuation(tc):  # Word hides any text left in such cells
                continue
            for block in _blocks(tc, _Cell(tc, table)):
                cells.extend(_flatten_cell(block))
        line = " | ".join(cell for cell in cells if cell)
        if line:
            yield line


def _is_merge_continuation(tc: Any) -> bool:
    merge = tc.find(f"{_W}tcPr/{_W}vMerge")
    return merge is not None and merge.get(f"{_W}val", "continue") == "continue"


def _flatten_cell(block: str) -> list[str]:
    """A nested table's rows become extra cells of the outer row; other text one line."""
    if " | " in block:
        return [" ".join(part.split()) for part in block.replace("\n", " | ").split(" | ")]
    return [" ".join(block.split())]


_HEADER_FOOTER_ATTRIBUTES = (
    "header", "first_page_header", "even_page_header",
    "footer", "first_page_footer", "even_page_footer",
)  # fmt: skip


def _headers_footers(document: Any) -> tuple[list[str], list[str]]:
    """Each distinct header and footer text once (sections usually repeat the same one)."""
    seen: set[str] = set()
    headers: list[str] = []
    footers: list[str] = []
    for section in document.sections:
        for attribute in _HEADER_FOOTER_ATTRIBUTES:
            target = headers if "header" in attribute else footers
            part = getattr(section, attribute)
            if part.is_linked_to_previous:  # no definition of its own; reading would add one
                continue
            text = "\n".join(block for block in _blocks(part._element, part) if block.strip())
            key = " ".join(text.split())
            if key and key not in seen:
                seen.add(key)
                target.append(text)
    return headers, footers


def _title(document: Any) -> str | None:
    title = document.core_properties.title
    if title and str(title).strip():
        return str(title)
    for paragraph in document.paragraphs:
        style = paragraph.style
        name = str(style.name) if style is not None and style.name else ""
        if (name.startswith(("Heading", "Title"))) and paragraph.text.strip():
            return str(paragraph.text)
    return None


def extract(data: bytes, limits: Limits) -> ExtractedText:
    _check_archive(data, limits)
    try:
        document = docx.Document(io.BytesIO(data))
        body = list(_blocks(document.element.body, document._body))
        headers, footers = _headers_footers(document)
        title = _title(document)
    except UnreadableDocument:
        raise
    except Exception as exc:  # python-docx/lxml raise KeyError, XMLSyntaxError, ValueError...
        raise UnreadableDocument(f"not a valid DOCX file: {describe(exc)}") from exc
    blocks = [block for block in (*headers, *body, *footers) if block.strip()]
    return ExtractedText(text=normalise("\n\n".join(blocks)), title=clean_title(title))
