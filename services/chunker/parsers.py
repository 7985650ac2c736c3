"""Turn an uploaded file's bytes into clean plain text for the splitter.

Everything here is pure (bytes in, text out) so the chunker service can run it on any input
without crashing: a file that cannot be read raises `UnreadableDocument` with a reason that is
shown to the document's owner as the FAILED status, never a stack trace.
"""

from __future__ import annotations

import codecs
import io
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

__all__ = ["ExtractedText", "Limits", "UnreadableDocument", "extract_text", "normalise"]


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


_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Compound File: .doc/.xls, or an encrypted .docx
# Binary formats that a user may upload under the wrong name, by their first bytes.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (_OLE, "an old-style Office file (.doc, .xls, .ppt, or a password-protected .docx)"),
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


def _content_kind(data: bytes) -> str | None:
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


def _detect_format(data: bytes, filename: str, content_type: str | None) -> str:
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


# --------------------------------------------------------------------------- text decoding

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

_DECLARED_CHARSET = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)"""
    rb"""|<\?xml[^>]+encoding\s*=\s*["']([A-Za-z0-9_.:-]+)""",
    re.IGNORECASE,
)

# Browsers decode these labels as windows-1252 (WHATWG Encoding standard); so do we.
_AS_CP1252 = {"ascii", "latin_1", "iso8859_1", "cp1252"}


def _declared_charset(data: bytes) -> str | None:
    match = _DECLARED_CHARSET.search(data[:8192])
    if match is None:
        return None
    label = (match.group(1) or match.group(2)).decode("ascii", "replace")
    try:
        name = codecs.lookup(label).name.replace("-", "_")
    except LookupError:
        return None
    return "cp1252" if name in _AS_CP1252 else name


def _utf16_without_bom(data: bytes) -> str | None:
    """The codec of UTF-16 text written without a BOM (some Windows tools do), recognised by
    every other byte being zero beside printable ASCII; None for anything else."""
    sample = data[:4096]
    if len(sample) < 4:
        return None
    sample = sample[: len(sample) // 2 * 2]
    for codec, zeros, letters in (("utf-16-le", 1, 0), ("utf-16-be", 0, 1)):
        pairs = list(zip(sample[letters::2], sample[zeros::2], strict=True))
        ascii_pairs = sum(
            1 for low, high in pairs if high == 0 and (32 <= low < 127 or low in b"\t\n\r")
        )
        if ascii_pairs >= 0.9 * len(pairs):
            return codec
    return None


def decode_text(data: bytes) -> str:
    """Decode bytes of unknown encoding; never raises.

    A BOM decides first. UTF-16 without a BOM is recognised by its zero bytes. UTF-8 is by far
    the most common and almost never decodes by accident, so it wins when valid. Otherwise a
    declared charset is trusted, a mostly-UTF-8 file with a few damaged bytes stays UTF-8 (the
    damaged bytes become U+FFFD and are dropped), and legacy files without any of these are
    nearly always Windows-1252 (a superset of Latin-1 that also has €, smart quotes and dashes).
    """
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(codec, errors="replace")
    utf16 = _utf16_without_bom(data)
    if utf16 is not None:
        return data.decode(utf16, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    declared = _declared_charset(data)
    if declared is not None and declared not in {"utf_8", "utf_8_sig"}:
        return data.decode(declared, errors="replace")
    # Mostly valid UTF-8 with a few damaged bytes: keep it UTF-8 rather than mojibake it all.
    lenient = data.decode("utf-8", errors="replace")
    damaged = lenient.count("\ufffd")
    multibyte = sum(1 for char in lenient if ord(char) > 0x7F) - damaged
    if multibyte > damaged:
        return lenient
    return data.decode("cp1252", errors="replace")


# --------------------------------------------------------------------------- normalisation

_LINE_BREAKS = re.compile("\r\n|[\r\x0b\x0c\x85\u2028\u2029]")
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


def normalise(text: str) -> str:
    """Canonical text so equal content chunks and embeds the same whatever its source format.

    NFKC folds compatibility forms (ligatures such as "ﬁ" from PDFs, full-width letters, no-break
    spaces) and composes Hangul jamo, while leaving every script's letters intact.
    """
    text = _LINE_BREAKS.sub("\n", text)
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


def _clean_title(title: str | None) -> str | None:
    """One line, or None when the "title" is only a file name left by the authoring tool."""
    if not title:
        return None
    cleaned = " ".join(normalise(title).split())[:300]
    if not cleaned or _FILENAME_TITLE.match(cleaned):
        return None
    return cleaned


# --------------------------------------------------------------------------- plain text


def _reject_binary(text: str) -> None:
    """A "text" file full of control characters is a mislabelled binary, not a document."""
    sample = text[:65536]
    if not sample:
        return
    controls = sum(1 for char in sample if char < " " and char not in "\t\n\r\x0c")
    if controls > len(sample) * 0.05:
        raise UnreadableDocument("file looks binary, not text")


def _check_length(chars: int, limits: Limits) -> None:
    if chars > limits.max_text_chars:
        raise UnreadableDocument(
            f"document text is over the {limits.max_text_chars:,}-character limit; split it"
            " into smaller files"
        )


def _read_text_file(data: bytes) -> str:
    """A text format's bytes as text, in whatever encoding they are (see `decode_text`);
    refused when they are a known binary format or mostly control characters."""
    kind = _content_kind(data)
    if kind is not None:
        raise UnreadableDocument(f"not a text file: the content is {kind} (wrong file name?)")
    text = decode_text(data)
    _reject_binary(text)
    return text


def _extract_plain(data: bytes, limits: Limits) -> ExtractedText:
    text = _read_text_file(data)
    _check_length(len(text), limits)  # before normalising, the costly part
    return ExtractedText(text=normalise(text))


# --------------------------------------------------------------------------- markdown

_FRONT_MATTER = re.compile(
    r"\A(?:---[ \t]*\n(?:(.*?)\n)?---|\+\+\+[ \t]*\n(?:(.*?)\n)?\+\+\+)[ \t]*(?:\n|\Z)", re.S
)
_FRONT_MATTER_KEY = re.compile(r"""^([A-Za-z_][\w-]*)[ \t]*[:=][ \t]*(.*?)[ \t]*$""")
_HTML_COMMENT_OPEN = re.compile(re.escape("<!--"))
_HTML_COMMENT_CLOSE = re.compile(re.escape("-->"))
_COMMENT_SHORTCODE_OPEN = re.compile(r"\{\{[<%]\s*comment\s*[>%]\}\}")
_COMMENT_SHORTCODE_CLOSE = re.compile(r"\{\{[<%]\s*/comment\s*[>%]\}\}")
# Arguments never contain braces, which also keeps a run of unclosed "{{<" linear.
_SHORTCODE = re.compile(
    r"\{\{[<%]-?\s*(?P<close>/?)\s*(?P<name>[\w.-]+)(?P<args>[^{}]*?)-?[>%]\}\}"
)
_SHORTCODE_ARG = re.compile(r"""(\w+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"']+))""")
_SHORTCODE_HEADINGS = {
    "prerequisites": "Before you begin",
    "whatsnext": "What's next",
    "objectives": "Objectives",
    "cleanup": "Clean up",
    "synopsis": "Synopsis",
    "options": "Options",
    "seealso": "See also",
}
_SHORTCODE_CALLOUTS = {"note": "Note:", "caution": "Caution:", "warning": "Warning:"}
# Link text stops at brackets and targets at parens/whitespace: linear even on hostile input.
_MD_TARGET = r"\((?:<[^<>\n]*>|(?:[^()\s]|\([^()\s]*\))*)(?:[ \t]+\"[^\"\n]*\")?\)"
_MD_IMAGE = re.compile(r"!\[([^\[\]\n]*)\]" + _MD_TARGET)
_MD_LINK = re.compile(r"(?<!\\)\[([^\[\]\n]+)\]" + _MD_TARGET)
_MD_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
_DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=\s]{64,}")


def _drop_blocks(text: str, opener: re.Pattern[str], closer: re.Pattern[str]) -> str:
    """Remove every opener...closer block in one linear pass (a lazy `.*?` regex goes
    quadratic on many unclosed openers). An unclosed block is left as it is."""
    kept: list[str] = []
    position = 0
    while (start := opener.search(text, position)) is not None:
        end = closer.search(text, start.end())
        if end is None:
            break
        kept.append(text[position : start.start()])
        position = end.end()
    kept.append(text[position:])
    return "".join(kept)


def _shortcode_args(raw: str) -> dict[str, str]:
    args: dict[str, str] = {}
    for match in _SHORTCODE_ARG.finditer(raw):
        args[match.group(1)] = next(
            (group for group in match.groups()[1:] if group is not None), ""
        )
    return args


def _replace_shortcode(match: re.Match[str]) -> str:
    """Render a Hugo shortcode as the words a reader would see, or nothing."""
    if match.group("close"):
        return ""
    name = match.group("name")
    raw = match.group("args")
    args = _shortcode_args(raw)
    if "text" in args:
        return args["text"]
    if name == "glossary_tooltip" and "term_id" in args:
        return args["term_id"].replace("-", " ").replace("_", " ")
    if name == "heading":
        key = raw.strip().strip("\"'")
        return _SHORTCODE_HEADINGS.get(key, key.capitalize())
    if name in _SHORTCODE_CALLOUTS:
        return _SHORTCODE_CALLOUTS[name]
    if name == "tab" and "name" in args:
        return args["name"]
    if name == "figure":
        return args.get("caption") or args.get("alt") or args.get("title") or ""
    return ""


def _front_matter_fields(block: str) -> dict[str, str]:
    """Top-level scalar fields of YAML (or TOML) front matter, block scalars included.

    Only `title` and `description` are used, so a tiny reader beats a YAML dependency (and
    cannot be made to expand alias bombs).
    """
    fields: dict[str, str] = {}
    lines = block.split("\n")
    index = 0
    while index < len(lines):
        match = _FRONT_MATTER_KEY.match(lines[index])
        index += 1
        if match is None:
            continue
        key, value = match.group(1), match.group(2)
        if value[:1] in {">", "|"} or not value:
            continued: list[str] = []
            while index < len(lines) and (not lines[index].strip() or lines[index][:1] in " \t"):
                continued.append(lines[index].strip())
                index += 1
            if value[:1] == "|":
                value = "\n".join(continued)
            elif value or all(not line.startswith(("- ", "-\t")) for line in continued):
                value = " ".join(line for line in continued if line)
            else:  # a list or mapping, not text
                value = ""
        elif value[0] == value[-1] and value[0] in "\"'" and len(value) >= 2:
            value = value[1:-1]
        if value.strip():
            fields.setdefault(key.lower(), value.strip())
    return fields


def _extract_markdown(data: bytes, limits: Limits) -> ExtractedText:
    text = _read_text_file(data)
    _check_length(len(text), limits)
    text = _LINE_BREAKS.sub("\n", text).lstrip("\ufeff")
    title: str | None = None
    lead: list[str] = []
    front = _FRONT_MATTER.match(text)
    if front is not None:
        fields = _front_matter_fields(front.group(1) or front.group(2) or "")
        title = fields.get("title")
        # A rendered page shows its title and description first; index pages have nothing else.
        lead = [f"# {title}" if title else "", fields.get("description", "")]
        text = "\n\n".join([*lead, text[front.end() :]])
    text = _drop_blocks(text, _HTML_COMMENT_OPEN, _HTML_COMMENT_CLOSE)
    text = _drop_blocks(text, _COMMENT_SHORTCODE_OPEN, _COMMENT_SHORTCODE_CLOSE)
    text = _SHORTCODE.sub(_replace_shortcode, text)
    text = _DATA_URI.sub("", text)
    text = _MD_IMAGE.sub(r"\1", text)
    text = _MD_LINK.sub(r"\1", text)
    if title is None:
        heading = _MD_HEADING.search(text)
        title = heading.group(1) if heading else None
    return ExtractedText(text=normalise(text), title=_clean_title(title))


# --------------------------------------------------------------------------- HTML

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
        if tag in ("pre", "textarea", "listing", "plaintext", "xmp"):
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
        if tag in ("pre", "textarea", "listing", "plaintext", "xmp"):
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


def _extract_html(data: bytes, limits: Limits) -> ExtractedText:
    import lxml.etree
    import lxml.html

    text = _read_text_file(data)
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
        raise UnreadableDocument(f"not a readable HTML file: {_describe(exc)}") from exc
    title_element = root.find(".//title")
    title = _clean_title(title_element.text_content() if title_element is not None else None)
    if title is None:
        headings = (_clean_title(element.text_content()) for element in root.iter(*_HEADINGS))
        title = next((heading for heading in headings if heading), None)
    body = _DATA_URI.sub("", _HtmlRenderer().render(root))
    return ExtractedText(text=normalise(body), title=title)


# --------------------------------------------------------------------------- PDF

# Fewer letters/digits than this per page means the pages are images (a scan without OCR).
_MIN_ALNUM_PER_PAGE = 5
# Typeset PDFs hyphenate at line ends ("ef-\nficient"); rejoin lower-case word halves.
_HYPHENATED_BREAK = re.compile(r"(?<=[^\W\d_])-\n(?=[^\W\d_])")


def _join_hyphenated(text: str) -> str:
    """Rejoin a word split at a line end ("ef-\nficient"), unless the next half is Capitalised."""

    def join(match: re.Match[str]) -> str:
        return "" if text[match.end()].islower() else match.group(0)

    return _HYPHENATED_BREAK.sub(join, text)


def _check_pdf_envelope(data: bytes) -> None:
    """A PDF starts with `%PDF-` (within 1 KiB, as readers allow) and ends with `%%EOF` (a
    little trailing junk allowed). Without the end it is truncated: refused rather than
    indexed from the pages a lenient reader happens to recover."""
    if b"%PDF-" not in data[:1024]:
        kind = _content_kind(data)
        raise UnreadableDocument(
            f"not a PDF file: the content is {kind} (wrong file name?)"
            if kind
            else "not a PDF file: it does not start with a %PDF- header"
        )
    if b"%%EOF" not in data[-2048:]:
        raise UnreadableDocument(
            "corrupt or truncated PDF: it does not end with %%EOF (incomplete upload or copy?)"
        )


def _extract_pdf(data: bytes, limits: Limits) -> ExtractedText:
    from pypdf import PasswordType, PdfReader

    _check_pdf_envelope(data)
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
    except Exception as exc:  # pypdf raises many types on damaged input
        raise UnreadableDocument(f"corrupt or truncated PDF: {_describe(exc)}") from exc
    try:
        if reader.is_encrypted:
            # Only the empty user password is tried, as every PDF viewer does: such files are
            # merely permission-restricted. Guessing real passwords is not ours to do.
            try:
                opened = reader.decrypt("") != PasswordType.NOT_DECRYPTED
            except Exception:
                opened = False
            if not opened:
                raise UnreadableDocument("PDF is encrypted (password required)")
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
            _check_length(chars, limits)
        title = _pdf_title(reader)
    except UnreadableDocument:
        raise
    except Exception as exc:
        raise UnreadableDocument(f"corrupt or truncated PDF: {_describe(exc)}") from exc
    text = _join_hyphenated(normalise("\n\n".join(texts)))
    letters = sum(1 for char in text if char.isalnum())
    if failures and letters == 0:
        raise UnreadableDocument(f"corrupt or truncated PDF: {_describe(failures[0])}")
    if page_count == 0:
        raise UnreadableDocument("corrupt or truncated PDF: no pages")
    if letters < _MIN_ALNUM_PER_PAGE * page_count:
        raise UnreadableDocument("PDF has no text layer (scanned image; OCR is not supported)")
    return ExtractedText(text=text, title=_clean_title(title), pages=page_count)


def _pdf_title(reader: Any) -> str | None:
    try:
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except Exception:
        return None
    return str(title) if title else None


def _describe(exc: BaseException) -> str:
    message = " ".join(str(exc).split())[:200]
    return message or type(exc).__name__


# --------------------------------------------------------------------------- DOCX

_RATIO_CHECK_MIN_BYTES = 1024 * 1024  # small parts may compress well (repeated styles)
# An encrypted OOXML file is a Compound File holding an "EncryptedPackage" stream.
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def _size(count: int) -> str:
    return f"{count // (1024 * 1024)} MB" if count >= 1024 * 1024 else f"{count // 1024} KB"


def _check_docx_envelope(data: bytes) -> None:
    """Name what a ".docx" that is not a zip really is: a password-protected DOCX, an old .doc,
    or another format altogether."""
    if data.startswith(b"PK"):
        return
    if data.startswith(_OLE) and _ENCRYPTED_PACKAGE in data:
        raise UnreadableDocument("DOCX is encrypted (password protected): remove the password")
    if data.startswith(_OLE):
        raise UnreadableDocument(
            "not a valid DOCX file: it is an old-style Office file (.doc): save it as .docx"
        )
    kind = _content_kind(data)
    if kind is not None:
        raise UnreadableDocument(f"not a valid DOCX file: the content is {kind} (wrong file name?)")


def _check_docx_archive(data: bytes, limits: Limits) -> None:
    """Refuse zip bombs from the central directory alone, before anything is inflated.

    zipfile never inflates a member beyond its declared size, so the declared sizes are a
    trustworthy upper bound for what python-docx will read.
    """
    _check_docx_envelope(data)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise UnreadableDocument(f"not a valid DOCX file: {_describe(exc)}") from exc
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


def _docx_blocks(container: Any, parent: Any) -> Iterator[str]:
    """Body-order text blocks: a paragraph is a block, a table is one block of rows."""
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    for child in container.iterchildren():
        tag = child.tag
        if tag == f"{_W}p":
            yield Paragraph(child, parent).text
        elif tag == f"{_W}tbl":
            yield "\n".join(_docx_table_rows(Table(child, parent)))
        elif tag == f"{_W}sdt":  # content controls wrap ordinary paragraphs and tables
            content = child.find(f"{_W}sdtContent")
            if content is not None:
                yield from _docx_blocks(content, parent)


def _docx_table_rows(table: Any) -> Iterator[str]:
    """One line per row; physical cells only, so a merged cell is not repeated."""
    from docx.table import _Cell

    for tr in table._tbl.tr_lst:
        cells: list[str] = []
        for tc in tr.tc_lst:
            if _is_merge_continuation(tc):  # Word hides any text left in such cells
                continue
            for block in _docx_blocks(tc, _Cell(tc, table)):
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


def _docx_headers_footers(document: Any) -> tuple[list[str], list[str]]:
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
            text = "\n".join(block for block in _docx_blocks(part._element, part) if block.strip())
            key = " ".join(text.split())
            if key and key not in seen:
                seen.add(key)
                target.append(text)
    return headers, footers


def _docx_title(document: Any) -> str | None:
    title = document.core_properties.title
    if title and str(title).strip():
        return str(title)
    for paragraph in document.paragraphs:
        style = paragraph.style
        name = str(style.name) if style is not None and style.name else ""
        if (name.startswith(("Heading", "Title"))) and paragraph.text.strip():
            return str(paragraph.text)
    return None


def _extract_docx(data: bytes, limits: Limits) -> ExtractedText:
    _check_docx_archive(data, limits)
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
        body = list(_docx_blocks(document.element.body, document._body))
        headers, footers = _docx_headers_footers(document)
        title = _docx_title(document)
    except UnreadableDocument:
        raise
    except Exception as exc:  # python-docx/lxml raise KeyError, XMLSyntaxError, ValueError...
        raise UnreadableDocument(f"not a valid DOCX file: {_describe(exc)}") from exc
    blocks = [block for block in (*headers, *body, *footers) if block.strip()]
    return ExtractedText(text=normalise("\n\n".join(blocks)), title=_clean_title(title))


# --------------------------------------------------------------------------- entry point

_EXTRACTORS: dict[str, Callable[[bytes, Limits], ExtractedText]] = {
    "text": _extract_plain,
    "markdown": _extract_markdown,
    "html": _extract_html,
    "pdf": _extract_pdf,
    "docx": _extract_docx,
}


# The limits `extract_text` applies when it is given none: a process that parses for a service
# (the chunker's sandbox worker) sets its configured limits here once.
LIMITS: ContextVar[Limits | None] = ContextVar("parser_limits", default=None)


def extract_text(
    data: bytes, filename: str, content_type: str | None, limits: Limits | None = None
) -> ExtractedText:
    """Extract normalised text from a document, or raise `UnreadableDocument` saying why.

    Unreadable input is an expected outcome, not a bug: the reason goes to the document's
    status, so it is worded for the person who uploaded the file. Whatever a parser library
    raises on a hostile file becomes `UnreadableDocument` too; nothing else escapes.
    """
    limits = limits or LIMITS.get() or Limits()
    if not data:
        raise UnreadableDocument("file is empty")
    kind = _detect_format(data, filename, content_type)
    try:
        extracted = _EXTRACTORS[kind](data, limits)
    except UnreadableDocument:
        raise
    except MemoryError as exc:
        raise UnreadableDocument(f"the {kind} file needs too much memory to read") from exc
    except RecursionError as exc:
        raise UnreadableDocument(f"the {kind} file is nested too deeply to read") from exc
    except Exception as exc:  # a parser library's bug or a hostile file: the reason, not a trace
        raise UnreadableDocument(f"could not read the {kind} file: {_describe(exc)}") from exc
    if not extracted.text:
        raise UnreadableDocument("no extractable text")
    _check_length(len(extracted.text), limits)
    return extracted
