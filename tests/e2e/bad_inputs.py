"""The bad-input corpus: files and raw records that the pipeline must refuse with a reason.

Everything is generated here, deterministically (seeded), most of it from scratch; the real
PDF/DOCX fixtures in shared/data/formats only seed extra truncated and mislabelled variants when
they are there. Each case says which category it tests and a fragment of the reason it must
fail with, so the test can tell a right refusal from an accidental one.
"""

import base64
import io
import random
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docx
import orjson
from pypdf import PdfReader, PdfWriter

from contracts.topics import CHUNKS_READY, DOCUMENT_STATUS, DOCUMENT_UPLOADED, VECTORS_READY

TENANT = "default"  # the stack runs without API keys: the status API shows this tenant only
DIMENSIONS = 384  # the default embedding model's


@dataclass(frozen=True)
class FileCase:
    """A file whose reading must fail with a reason containing `reason`."""

    category: str
    name: str
    data: bytes
    reason: str
    content_type: str | None = None


@dataclass(frozen=True)
class RecordCase:
    """A raw record for `topic`; its dead letter is found by `key`, and its error contains
    `error`. `document_id` names the document that must end FAILED, when the record names a
    document and a tenant (else None: the dead letter alone accounts for it)."""

    category: str
    topic: str
    key: str
    value: bytes | None
    error: str
    document_id: str | None


# --------------------------------------------------------------------------- file builders


def text_pdf(lines: list[str]) -> bytes:
    """A minimal valid one-page PDF of Helvetica text, byte offsets and all."""

    def literal(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    stream = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({literal(x)}) '" for x in lines)
    content = (stream + " ET").encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _written(writer: PdfWriter) -> bytes:
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def blank_pdf(pages: int, size: tuple[int, int] = (612, 792)) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(*size)
    return _written(writer)


def encrypted_pdf(data: bytes, password: str, algorithm: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=password, owner_password="owner", algorithm=algorithm)
    return _written(writer)


def docx_file(paragraphs: list[str]) -> bytes:
    document = docx.Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes], level: int = 9) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def docx_with(
    data: bytes, replace: dict[str, bytes] | None = None, drop: tuple[str, ...] = ()
) -> bytes:
    """A copy of a DOCX with parts replaced or dropped."""
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        members = {
            info.filename: (replace or {}).get(info.filename, source.read(info.filename))
            for info in source.infolist()
            if info.filename not in drop
        }
    return zip_bytes(members)


def ole_file(streams: list[str], padding: int = 0) -> bytes:
    """A Compound File (the container of .doc files and of password-protected .docx): the
    512-byte header, then one directory sector naming `streams` (UTF-16LE, 128-byte entries)."""
    header = bytearray(512)
    header[:8] = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
    header[24:34] = b"\x3e\x00\x03\x00\xfe\xff\x09\x00\x06\x00"  # minor/major version, BOM, 512 B
    directory = bytearray()
    for name in ["Root Entry", *streams]:
        encoded = (name + "\0").encode("utf-16-le")
        entry = bytearray(128)
        entry[: len(encoded)] = encoded
        entry[64:66] = len(encoded).to_bytes(2, "little")
        entry[66] = 5 if name == "Root Entry" else 2
        directory += entry
    directory += bytes(-len(directory) % 512)
    return bytes(header + directory) + bytes(padding)


def _noise(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


# --------------------------------------------------------------------------- file cases

NO_TEXT_LAYER = "no text layer"
TRUNCATED_PDF = "does not end with %%EOF"
BAD_DOCX = "not a valid DOCX file"
BOMB = "zip bomb"
MB = 1024 * 1024

SIGNATURES = {
    "png": b"\x89PNG\r\n\x1a\n",
    "jpeg": b"\xff\xd8\xff\xe0",
    "gif": b"GIF89a",
    "gzip": b"\x1f\x8b\x08\x00",
    "elf": b"\x7fELF\x02\x01\x01",
    "7z": b"7z\xbc\xaf\x27\x1c",
    "tiff": b"II*\x00",
    "rar": b"Rar!\x1a\x07\x00",
}


def _truncations(data: bytes, fractions: tuple[float, ...]) -> Iterator[tuple[float, bytes]]:
    """Prefixes of `data`, leaving out any that end just after an earlier `%%EOF` (that is
    a complete older revision of a PDF, not a truncated file)."""
    for fraction in fractions:
        cut = data[: int(len(data) * fraction)]
        if b"%%EOF" not in cut[-2048:]:
            yield fraction, cut


def _pdf_cases() -> Iterator[FileCase]:
    texts = [
        ["Quarterly report of the orchard cooperative.", "Pears were picked every morning."],
        ["Field notes on alpine marmots.", "They whistle when an eagle circles overhead."],
        ["Minutes of the harbour board.", "The new pier opens in spring after the storms."],
    ]
    sources = [text_pdf(lines) for lines in texts]
    for number, source in enumerate(sources):
        for fraction, cut in _truncations(source, (0.05, 0.25, 0.5, 0.75, 0.9, 0.97, 0.995)):
            yield FileCase(
                "truncated-pdf", f"truncated-{number}-{fraction}.pdf", cut, TRUNCATED_PDF
            )
    for number, size in enumerate((16, 500, 5_000, 50_000, 500_000)):
        body = b"%PDF-1.7\n" + _noise(number, size) + b"\n%%EOF\n"
        yield FileCase("corrupt-pdf", f"random-body-{size}.pdf", body, "corrupt or truncated PDF")
    broken = {
        "no-startxref": sources[0].replace(b"startxref", b"startxyz!"),
        "no-objects": sources[1].replace(b" obj", b" jbo").replace(b"startxref", b"xxxxxxxxx"),
        "header-only": b"%PDF-1.7\n%%EOF\n",
        "zeros": b"%PDF-1.4\n" + bytes(10_000) + b"%%EOF",
    }
    for name, data in broken.items():
        yield FileCase("corrupt-pdf", f"{name}.pdf", data, "corrupt or truncated PDF")
    for pages, box in ((1, (612, 792)), (3, (200, 200)), (12, (842, 595))):
        yield FileCase(
            "no-text-layer-pdf", f"blank-{pages}.pdf", blank_pdf(pages, box), NO_TEXT_LAYER
        )
    empty_stream = sources[2].replace(b"BT /F1", b"%% /F1")  # the text operators commented out
    yield FileCase("no-text-layer-pdf", "no-text-operators.pdf", empty_stream, NO_TEXT_LAYER)
    algorithms = ("RC4-40", "RC4-128", "AES-128", "AES-256-R5", "AES-256")
    for number, algorithm in enumerate(algorithms):
        locked = encrypted_pdf(sources[number % 3], f"secret-{number}", algorithm)
        yield FileCase("encrypted-pdf", f"locked-{algorithm}.pdf", locked, "encrypted")
    yield FileCase("oversized-pdf", "2001-pages.pdf", blank_pdf(2001, (100, 100)), "2,001 pages")


def _docx_cases() -> Iterator[FileCase]:
    good = docx_file(["Minutes of the rowing club.", "The boathouse roof needs repair."])
    for fraction, cut in _truncations(good, (0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 0.999)):
        yield FileCase("truncated-docx", f"truncated-{fraction}.docx", cut, BAD_DOCX)
    broken = {
        "no-content-types": docx_with(good, drop=("[Content_Types].xml",)),
        "no-document-part": docx_with(good, drop=("word/document.xml",)),
        "malformed-xml": docx_with(good, {"word/document.xml": b"<w:document><w:body"}),
        "empty-xml": docx_with(good, {"word/document.xml": b""}),
        "no-relationships": docx_with(good, drop=("_rels/.rels",)),
        "pk-then-noise": b"PK\x03\x04" + _noise(7, 4096),
        "empty-zip": zip_bytes({}),
    }
    for name, data in broken.items():
        yield FileCase("corrupt-docx", f"{name}.docx", data, BAD_DOCX)
    laughs = [b'<!ENTITY l0 "lol">'] + [
        b'<!ENTITY l%d "%s">' % (n, b"".join(b"&l%d;" % (n - 1) for _ in range(10)))
        for n in range(1, 10)
    ]
    billion = (
        b'<?xml version="1.0"?><!DOCTYPE d [' + b"".join(laughs) + b"]>"
        b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        b"<w:body><w:p><w:r><w:t>&l9;</w:t></w:r></w:p></w:body></w:document>"
    )
    yield FileCase(
        "docx-zip-bomb", "billion-laughs.docx", docx_with(good, {"word/document.xml": billion}),
        BAD_DOCX,
    )  # fmt: skip
    for megabytes in (8, 40, 150):
        bomb = docx_with(good, {"word/document.xml": bytes(megabytes * MB)})
        yield FileCase("docx-zip-bomb", f"ratio-{megabytes}mb.docx", bomb, BOMB)
    padding = {f"word/media/pad{n}.bin": bytes(MB - 1) for n in range(210)}
    yield FileCase(
        "docx-zip-bomb",
        "total-size.docx",
        zip_bytes({**padding, "word/document.xml": b"<x/>"}),
        BOMB,
    )
    parts = {f"customXml/item{n}.xml": b"<x/>" for n in range(10_001)}
    yield FileCase("docx-zip-bomb", "many-parts.docx", zip_bytes(parts, level=1), BOMB)
    for number, padding_bytes in enumerate((0, 4096, 65536)):
        locked = ole_file(["EncryptionInfo", "EncryptedPackage"], padding_bytes)
        yield FileCase("encrypted-docx", f"password-{number}.docx", locked, "encrypted")
    for number, streams in enumerate((["WordDocument", "1Table"], ["Workbook"])):
        yield FileCase("legacy-doc", f"legacy-{number}.docx", ole_file(streams), "old-style Office")


def _wrong_content_cases() -> Iterator[FileCase]:
    pdf = text_pdf(["A real PDF that was given the wrong name."])
    document = docx_file(["A real DOCX that was given the wrong name."])
    mislabelled = [
        ("png", ".pdf", "PNG image"), ("jpeg", ".pdf", "JPEG image"), ("gif", ".pdf", "GIF image"),
        ("gzip", ".pdf", "gzip archive"), ("png", ".docx", "PNG image"),
        ("jpeg", ".docx", "JPEG image"), ("gzip", ".docx", "gzip archive"),
        ("png", ".txt", "PNG image"), ("elf", ".txt", "ELF"), ("gzip", ".html", "gzip archive"),
        ("7z", ".md", "7-Zip archive"), ("tiff", ".htm", "TIFF image"),
        ("rar", ".markdown", "RAR archive"), ("gif", ".md", "GIF image"),
    ]  # fmt: skip
    for number, (kind, suffix, reason) in enumerate(mislabelled):
        data = SIGNATURES[kind] + _noise(100 + number, 2048)
        yield FileCase(
            "wrong-content", f"{kind}-as{suffix.replace('.', '-')}{suffix}", data, reason
        )
    yield FileCase("wrong-content", "pdf-as.docx", pdf, "PDF document")
    yield FileCase("wrong-content", "docx-as.pdf", document, "DOCX document")
    yield FileCase("wrong-content", "pdf-as.txt", pdf, "PDF document")
    yield FileCase("wrong-content", "docx-as.md", document, "DOCX document")
    yield FileCase("wrong-content", "ole-as.txt", ole_file(["WordDocument"]), "old-style Office")


def _text_cases() -> Iterator[FileCase]:
    for number, size in enumerate((64, 512, 4096, 65536, MB)):
        for suffix in (".txt", ".md", ".html"):
            data = b"\x00" + _noise(200 + number, size)  # a leading NUL: no known signature
            yield FileCase("binary-as-text", f"noise-{size}{suffix}", data, "binary")
    yield FileCase("binary-as-text", "controls.txt", bytes(range(1, 32)) * 100, "binary")
    yield FileCase("binary-as-text", "nul-every-third.md", b"ab\x00" * 2000, "binary")
    for suffix in (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx"):
        yield FileCase("empty", f"empty{suffix}", b"", "file is empty")
    for suffix in (".txt", ".md", ".html"):
        yield FileCase("empty", f"blank{suffix}", b" \n\t\r\n  \n", "no extractable text")
    markup = b"<html><head><script>var x = 1;</script><style>p{}</style></head><body></body></html>"
    yield FileCase("empty", "markup-only.html", markup, "no extractable text")
    yield FileCase("empty", "no-paragraphs.docx", docx_file([]), "no extractable text")
    too_long = b"word " * 2_000_001  # over the default 10,000,000-character limit
    yield FileCase("oversized", "too-long.txt", too_long, "-character limit")
    yield FileCase("oversized", "too-long.md", too_long, "-character limit")


UNSUPPORTED = [
    ("setup.exe", b"MZ\x90\x00" + bytes(100), None, "unsupported file type '.exe'"),
    ("photo.png", SIGNATURES["png"] + bytes(100), None, "unsupported file type '.png'"),
    ("photo.jpg", SIGNATURES["jpeg"] + bytes(100), None, "unsupported file type '.jpg'"),
    ("archive.zip", zip_bytes({"a.txt": b"a"}), None, "unsupported file type '.zip'"),
    ("old.doc", ole_file(["WordDocument"]), None, "unsupported file type '.doc'"),
    ("sheet.xlsx", zip_bytes({"xl/workbook.xml": b"<x/>"}), None, "unsupported file type"),
    ("slides.pptx", zip_bytes({"ppt/presentation.xml": b"<x/>"}), None, "unsupported file type"),
    ("letter.rtf", b"{\\rtf1 hello}", None, "unsupported file type '.rtf'"),
    ("blob", b"\x00\x01\x02\x03" * 100, None, "unsupported file type"),
    ("upload", b"\x00\x01\x02\x03" * 100, "image/png", "unsupported content type 'image/png'"),
]


def file_cases() -> list[FileCase]:
    """The generated file cases (no shared data needed)."""
    unsupported = [
        FileCase("unsupported-type", name, data, reason, content_type)
        for name, data, content_type, reason in UNSUPPORTED
    ]
    return [
        *_pdf_cases(),
        *_docx_cases(),
        *_wrong_content_cases(),
        *_text_cases(),
        *unsupported,
    ]


def seeded_file_cases(formats: Path) -> list[FileCase]:
    """Truncated and mislabelled variants of the real fixtures in `formats`."""
    cases: list[FileCase] = []
    for path in sorted(formats.glob("pdf/*.pdf")):
        data = path.read_bytes()
        for fraction, cut in _truncations(data, (0.3, 0.8, 0.995)):
            cases.append(
                FileCase("truncated-pdf", f"{path.stem}-{fraction}.pdf", cut, TRUNCATED_PDF)
            )
        cases.append(FileCase("wrong-content", f"{path.stem}.docx", data, "PDF document"))
    for path in sorted(formats.glob("docx/*.docx")):
        data = path.read_bytes()
        for fraction, cut in _truncations(data, (0.3, 0.8, 0.995)):
            cases.append(FileCase("truncated-docx", f"{path.stem}-{fraction}.docx", cut, BAD_DOCX))
        cases.append(FileCase("wrong-content", f"{path.stem}.pdf", data, "DOCX document"))
    return cases


def tolerated_files() -> list[tuple[str, bytes]]:
    """Text in odd encodings or with damaged bytes: read, not refused (and so INDEXED)."""
    return [
        (
            "cp1252.txt",
            "Café prices rose by 5 \u20ac \u2013 said the \u201cowner\u201d.".encode("cp1252"),
        ),
        ("latin1.md", "# Größe\n\nDie Straße ist schön und grün.".encode("latin-1")),
        ("utf16-bom.txt", "Tide tables for the northern harbour.".encode("utf-16")),
        ("utf16le-no-bom.txt", "Ferry timetable for the winter season.".encode("utf-16-le")),
        ("damaged-utf8.html", "<p>Naïve café résumé ".encode() + b"\xff\xfe two bad bytes</p>"),
        ("shift-jis.html", '<meta charset="shift_jis"><p>東京の天気は晴れ</p>'.encode("shift_jis")),
    ]


# --------------------------------------------------------------------------- record cases


def _event(document_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "schema_version": "1.0",
        "event_id": uuid.uuid4().hex,
        "document_id": document_id,
        "tenant_id": TENANT,
        "trace_id": uuid.uuid4().hex,
        "occurred_at": "2026-01-01T00:00:00+00:00",
        **fields,
    }


def _ref(document_id: str, **fields: Any) -> dict[str, Any]:
    return _event(
        document_id,
        version="badbadbadbadbad0",
        source="bad-inputs.txt",
        total_chunks=1,
        batch=0,
        uploaded_at="2026-01-01T00:00:00+00:00",
        **fields,
    )


def _vector(values: list[float]) -> str:
    import numpy as np

    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode()


def _chunk(document_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "chunk_id": str(uuid.uuid5(uuid.NAMESPACE_URL, document_id)),
        "ordinal": 0,
        "text": "bad inputs",
        "token_count": 2,
        **fields,
    }


# A valid-looking event of each topic, for the wrong-schema mutations to start from.
BASES: dict[str, Callable[[str], dict[str, Any]]] = {
    DOCUMENT_UPLOADED: lambda d: _event(
        d, blob_uri="file:///nonexistent/bad-inputs.txt", filename="bad-inputs.txt"
    ),
    CHUNKS_READY: lambda d: _ref(d, chunks=[_chunk(d)]),
    VECTORS_READY: lambda d: _ref(
        d,
        model="bad-inputs",
        dimensions=DIMENSIONS,
        chunks=[_chunk(d, vector=_vector([0.05] * DIMENSIONS))],
    ),
    DOCUMENT_STATUS: lambda d: _event(d, kind="update", stage="chunker", state="CHUNKING"),
}

# Not JSON, or JSON that is no object: (category, value, error fragment).
UNREADABLE: list[tuple[str, bytes | None, str]] = [
    ("malformed-json", b"{not json", "invalid"),
    ("malformed-json", b'{"document_id": "x", ', "invalid"),
    ("malformed-json", b'{"a": NaN}', "invalid"),
    ("malformed-json", b"[" * 100_000, "invalid"),
    ("malformed-json", b'{"a": 1} trailing', "invalid"),
    ("non-json-bytes", b"\xff\xfe\x00\x01 binary", "invalid"),
    ("non-json-bytes", b"<event><id>1</id></event>", "invalid"),
    ("empty-value", b"", "invalid"),
    ("empty-value", None, "empty message"),
    ("wrong-schema", b"null", "invalid"),
    ("wrong-schema", b"[]", "invalid"),
    ("wrong-schema", b"42", "invalid"),
    ("wrong-schema", b'"a string"', "invalid"),
    ("wrong-schema", b"{}", "invalid"),
]


Mutation = tuple[str, Callable[[dict[str, Any]], dict[str, Any] | bytes], str]


def _set(**fields: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda event: {**event, **fields}


def _drop(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda event: {key: value for key, value in event.items() if key != name}


def _set_chunk(**fields: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda event: {**event, "chunks": [{**event["chunks"][0], **fields}]}


def _drop_chunk_text(event: dict[str, Any]) -> dict[str, Any]:
    chunk = {key: value for key, value in event["chunks"][0].items() if key != "text"}
    return {**event, "chunks": [chunk]}


def _invalid_utf8(event: dict[str, Any]) -> bytes:
    return orjson.dumps({**event, "trace_id": "\u00e9"}).replace("\u00e9".encode(), b"\xff")


# Events that are JSON objects but not valid: (category, mutation of a valid one, error).
COMMON: list[Mutation] = [
    ("unknown-schema-version", _set(schema_version="2.0"), "'2.0' is not supported"),
    ("unknown-schema-version", _set(schema_version="banana"), "is not supported"),
    ("missing-ids", _drop("document_id"), "document_id"),
    ("missing-ids", _drop("tenant_id"), "tenant_id"),
    ("missing-ids", _set(document_id=""), "document_id"),
    ("missing-ids", _set(document_id="x" * 300), "document_id"),
    ("wrong-schema", _set(document_id=12345), "document_id"),
    ("wrong-schema", _set(unexpected_field=True), "unexpected_field"),
    ("wrong-schema", _set(occurred_at="yesterday"), "occurred_at"),
    ("wrong-schema", lambda event: dict.fromkeys(event), "invalid event"),
    ("invalid-utf8-json", _invalid_utf8, "invalid"),
]
SPECIFIC: dict[str, list[Mutation]] = {
    DOCUMENT_UPLOADED: [
        ("wrong-schema", _set(sha256="not-a-digest"), "sha256"),
        ("wrong-schema", _set(size_bytes=-1), "size_bytes"),
        ("wrong-schema", _set(blob_uri=""), "blob_uri"),
        ("wrong-schema", _drop("filename"), "filename"),
        ("wrong-schema", _set(kind="deleted"), "invalid event"),
        ("wrong-schema", _set(metadata={"nested": {"a": 1}}), "metadata"),
    ],
    CHUNKS_READY: [
        ("bad-chunks", _set(chunks="not a list"), "chunks"),
        ("bad-chunks", _set_chunk(ordinal=-1), "ordinal"),
        ("bad-chunks", _drop_chunk_text, "text"),
        ("bad-chunks", _set(total_chunks=-1), "total_chunks"),
        ("bad-chunks", _set(batch="first"), "batch"),
        ("bad-chunks", _drop("version"), "version"),
        ("bad-chunks", _set(chunks=[], total_chunks=0), "chunks"),
    ],
    VECTORS_READY: [
        ("bad-vectors", _set_chunk(vector=_vector([0.1, 0.2, 0.3])), "has 3 floats, expected"),
        (
            "bad-vectors",
            lambda event: _set_chunk(vector=_vector([0.1, 0.2, 0.3]))({**event, "dimensions": 3}),
            "3-dimensional",
        ),
        ("bad-vectors", _set_chunk(vector="@@not base64@@"), "base64"),
        ("bad-vectors", _set_chunk(vector="QUJD"), "expected"),
        ("bad-vectors", _set(dimensions=0), "dimensions"),
        ("bad-vectors", _set_chunk(vector=[0.1] * 4), "vector"),
        ("bad-vectors", _set_chunk(vector=_vector([float("nan")] * DIMENSIONS)), "NaN"),
        ("bad-vectors", _set_chunk(vector=_vector([float("inf")] * DIMENSIONS)), "infinite"),
        ("bad-vectors", _set(chunks=[], total_chunks=0), "chunks"),
        # Well-formed vectors of a model the index does not hold.
        ("other-model", _set(model="another-model"), "never mixes embedding models"),
    ],
    DOCUMENT_STATUS: [
        ("bad-status", _set(state="BOGUS"), "state"),
        ("bad-status", _set(stage="nobody"), "stage"),
        ("bad-status", _set(kind="other"), "kind"),
        ("bad-status", _set(chunks=-5), "chunks"),
        ("bad-status", _drop("state"), "state"),
    ],
}


def _named_document(key: str, value: bytes | None) -> str | None:
    """The document a dead-lettered record must fail: the one it names with its tenant
    (`document_id`, else the key), as far as the record can be read."""
    try:
        parsed = orjson.loads(value or b"null")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict) or parsed.get("tenant_id") != TENANT:
        return None
    named = parsed.get("document_id")
    return named if isinstance(named, str) and 0 < len(named) <= 256 else key


def record_cases(run: str) -> list[RecordCase]:
    """Bad records for every topic a stage consumes, keyed `bad-<run>-<topic>-<n>`; an event
    that names a document names the same id."""
    cases: list[RecordCase] = []
    for topic in (DOCUMENT_UPLOADED, CHUNKS_READY, VECTORS_READY, DOCUMENT_STATUS):
        keys = (f"bad-{run}-{topic}-{number}" for number in range(1, 1000))
        for (category, value, error), key in zip(UNREADABLE, keys, strict=False):
            cases.append(RecordCase(category, topic, key, value, error, None))
        for (category, mutate, error), key in zip(COMMON + SPECIFIC[topic], keys, strict=False):
            mutated = mutate(BASES[topic](key))
            value = mutated if isinstance(mutated, bytes) else orjson.dumps(mutated)
            cases.append(
                RecordCase(category, topic, key, value, error, _named_document(key, value))
            )
    return cases


def _long_key(run: str, topic: str) -> RecordCase:
    """A tenant beside a key too long to be a document id."""
    key = f"bad-{run}-{topic}-long-key-" + "k" * 300
    return RecordCase("missing-ids", topic, key, orjson.dumps({"tenant_id": TENANT}), "", None)


def hard_to_letter_cases(run: str) -> list[RecordCase]:
    """Records that are hard to dead-letter: a key too long to be a document id beside a
    tenant (no FAILED status can name it), and a value too big to fit in a letter whole."""
    huge = b"\xff" + _noise(9, 7 * MB)
    return [
        case
        for topic in (DOCUMENT_UPLOADED, CHUNKS_READY, VECTORS_READY, DOCUMENT_STATUS)
        for case in (
            _long_key(run, topic),
            RecordCase("non-json-bytes", topic, f"bad-{run}-{topic}-huge", huge, "", None),
        )
    ]


def follower(topic: str, document_id: str) -> bytes:
    """An event of an unknown schema version naming `document_id`: it ends FAILED once the
    stage gets to it."""
    return orjson.dumps({**BASES[topic](document_id), "schema_version": "2.0"})


def promoted_junk() -> list[bytes | None]:
    """Records for `index.promoted`, read by every query replica without a group (no DLQ)."""
    return [
        b"{not json",
        b"",
        None,
        b"[]",
        b'{"schema_version": "2.0"}',
        b"\xff\xfe",
        b"[" * 50_000,
    ]
