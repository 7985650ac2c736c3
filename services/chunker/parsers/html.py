"""HTML as the text a browser shows: paragraphs, list items, table rows as "cell | cell"."""

from __future__ import annotations

import re
from typing import Any

import lxml.etree
import lxml.html

from .common import (
    DATA_URI,
    ExtractedText,
    Limits,
    UnreadableDocument,
    clean_title,
    describe,
    normalise,
)
from .txt import read_text_file

_HTML_SKIP = frozenset(
    {
        "script", "style", "head", "noscript", "svg", "math", "template", "iframe", "object",
        "embed", "canvas", "img", "picture", "video", "audio", "map", "select", "button",
        "ix:header",
    }
)  # fmt: skip
_HTML_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details",
        "dialog", "dir", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
        "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "html", "legend", "main",
        "menu", "nav", "ol", "p", "pre", "section", "summary", "table", "ul",
    }
)  # fmt: skip
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_PREFORMATTED = frozenset({"pre", "textarea", "listing", "plaintext", "xmp"})
_CELL = "\x1f"  # marks a table cell start in the raw rendering; resolved before normalising
_WHITESPACE = re.compile(r"\s+")
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.I)


def _is_hidden(element: Any) -> bool:
    style = element.get("style")
    return element.get("hidden") is not None or bool(style and _HIDDEN_STYLE.search(style))


class _HtmlRenderer:
    """Walks an lxml tree iteratively (deep real-world HTML would overflow recursion)."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.pre = 0
        self.cell = 0
        self.lists = 0

    def text(self, value: str | None) -> None:
        if not value:
            return
        if self.pre:
            self.out.append(value.replace("\n", " ") if self.cell else value)
        else:
            self.out.append(_WHITESPACE.sub(" ", value))

    def brk(self, newline: str) -> None:
        self.out.append(" " if self.cell else newline)

    def open(self, tag: str) -> None:
        if tag in ("td", "th"):
            self.out.append(_CELL)
            self.cell += 1
        elif tag == "tr":
            self.brk("\n")
        elif tag == "li":
            self.brk("\n- ")
        elif tag == "br":
            self.brk("\n")
        elif tag in ("ul", "ol"):  # a nested list continues its parent's lines
            if not self.lists:
                self.brk("\n\n")
            self.lists += 1
        elif tag in _HTML_BLOCKS:
            self.brk("\n\n")
        if tag in _PREFORMATTED:
            self.pre += 1

    def close(self, tag: str) -> None:
        if tag in ("td", "th"):
            self.cell -= 1
        elif tag in ("li", "tr"):
            pass
        elif tag in ("ul", "ol"):
            self.lists -= 1
            if not self.lists:
                self.brk("\n\n")
        elif tag in _HTML_BLOCKS:
            self.brk("\n\n")
        if tag in _PREFORMATTED:
            self.pre -= 1

    def render(self, root: Any) -> str:
        stack: list[tuple[Any, bool]] = [(root, False)]
        while stack:
            element, closing = stack.pop()
            tag = element.tag
            if closing:
                self.close(tag.lower())
                self.text(element.tail)
                continue
            if not isinstance(tag, str) or tag.lower() in _HTML_SKIP or _is_hidden(element):
                if element is not root:
                    self.text(element.tail)
                continue
            self.open(tag.lower())
            self.text(element.text)
            stack.append((element, True))
            stack.extend((child, False) for child in reversed(element))
        return _resolve_cells("".join(self.out))


def _resolve_cells(raw: str) -> str:
    """Table rows were rendered as one line with a marker per cell: join non-empty cells."""
    if _CELL not in raw:
        return raw
    lines = []
    for line in raw.split("\n"):
        if _CELL in line:
            cells = (cell.strip() for cell in line.split(_CELL))
            line = " | ".join(cell for cell in cells if cell)
        lines.append(line)
    return "\n".join(lines)


def extract(data: bytes, limits: Limits) -> ExtractedText:
    text = read_text_file(data)
    # libxml2 gets UTF-8 bytes with the encoding forced, so a stale <meta charset> cannot
    # make it decode the already-decoded text a second time.
    parser = lxml.html.HTMLParser(
        encoding="utf-8", remove_comments=True, remove_pis=True, no_network=True, huge_tree=True
    )
    try:
        root = lxml.html.document_fromstring(text.encode("utf-8", errors="replace"), parser=parser)
    except (lxml.etree.ParserError, ValueError) as exc:
        if not text.strip():
            raise UnreadableDocument("no extractable text") from exc
        raise UnreadableDocument(f"not a readable HTML file: {describe(exc)}") from exc
    title_element = root.find(".//title")
    title = clean_title(title_element.text_content() if title_element is not None else None)
    if title is None:
        headings = (clean_title(element.text_content()) for element in root.iter(*_HEADINGS))
        title = next((heading for heading in headings if heading), None)
    body = DATA_URI.sub("", _HtmlRenderer().render(root))
    return ExtractedText(text=normalise(body), title=title)
