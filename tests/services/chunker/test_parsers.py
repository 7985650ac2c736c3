"""Parsers on real-world fixtures and hostile inputs: text or a readable reason, never a crash."""

import difflib
import io
import os
import re
import time
import zipfile
from pathlib import Path

import docx
import pytest

from services.chunker.parsers import (
    ExtractedText,
    Limits,
    UnreadableDocument,
    extract_text,
    normalise,
    txt,
)
from tests.e2e.bad_inputs import (
    SIGNATURES,
    blank_pdf,
    docx_file,
    encrypted_pdf,
    ole_file,
    text_pdf,
    zip_bytes,
)

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[3]
DATA = REPO_ROOT.parent / "shared" / "data"
FORMATS = DATA / "formats"
K8S_DOCS = DATA / "k8s-docs"


def _fixture(relative: str) -> Path:
    path = FORMATS / relative
    if not path.is_file():
        pytest.skip(f"real test data not found at {path} (expected a checkout of shared/data)")
    return path


def _extract(relative: str) -> ExtractedText:
    path = _fixture(relative)
    return extract_text(path.read_bytes(), path.name, None)


def _assert_normalised(text: str) -> None:
    assert text and text == text.strip()
    assert "\n\n\n" not in text
    assert not re.search(r"[ \t]\n|\n[ \t]|  |\t", text)
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", text)


# Every one of the 30 fixtures: the fragments its text must contain, or its failure reason.
TEXT = "text"
FAIL = "fail"
NO_TEXT_LAYER = "PDF has no text layer (scanned image; OCR is not supported)"
ENCRYPTED = "PDF is encrypted (password required)"
FIXTURES: list[tuple[str, str, tuple[str, ...]]] = [
    ("pdf/unstructured__fake-memo.pdf", TEXT, ("May 5, 2023", "20,000 bottles of water")),
    ("pdf/unstructured__header-test-doc.pdf", TEXT, ("Header", "lovely", "Footer")),
    ("pdf/unstructured__list-item-example.pdf", TEXT, ("Module", "Quality", "Assurance")),
    ("pdf/unstructured__single_table.pdf", FAIL, (NO_TEXT_LAYER,)),
    ("pdf/unstructured__loremipsum-flat.pdf", FAIL, (NO_TEXT_LAYER,)),
    ("pdf/unstructured__multi-column-2p.pdf", TEXT, ("Dense Passage Retrieval", "efficient")),
    ("pdf/unstructured__layout-parser-paper-fast.pdf", TEXT, ("LayoutParser", "Unified")),
    ("pdf/unstructured__korean-text-with-tables.pdf", TEXT, ("적립 제외 대상", "삼성카드")),
    ("pdf/unstructured__password.pdf", FAIL, (ENCRYPTED,)),
    ("pdf/pypdf__crazyones.pdf", TEXT, ("The Crazy Ones", "misfits")),
    ("pdf/pypdf__crazyones-encrypted-256.pdf", FAIL, (ENCRYPTED,)),
    ("pdf/pypdf__multilang.pdf", TEXT, ("Hello World", "مرحبا بالعالم", "Привет, мир", "你好世界")),
    ("pdf/pypdf__Seige_of_Vicksburg_Sample_OCR.pdf", TEXT, ("SIEGE OF VICKSBURG",)),
    ("docx/unstructured__fake.docx", TEXT, ("Lorem ipsum dolor sit amet.",)),
    ("docx/unstructured__simple.docx", TEXT, ("a few of my favorite things", "Hockey")),
    ("docx/unstructured__docx-tables.docx", TEXT, ("Header Col 1 | Header Col 2", "Nested Table")),
    ("docx/unstructured__page-breaks.docx", TEXT, ("tab here:", "Continuous section break")),
    ("docx/unstructured__docx-hdrftr.docx", TEXT, ("First header para", "Main document", "para2")),
    ("docx/unstructured__example-list-items-multiple.docx", TEXT, ("Lorem Ipsum", "dummy text")),
    ("docx/unstructured__handbook-1p.docx", TEXT, ("US Trustee Handbook", "INTRODUCTION")),
    ("docx/unstructured__category-level.docx", TEXT, ("Call me Ishmael", "A Heading 1")),
    ("docx/python-docx__test.docx", TEXT, ("python-docx was here!", "here too!")),
    ("docx/python-docx__blk-paras-and-tables.docx", TEXT, ("Lorem ipsum", "Donec semper")),
    ("html/unstructured__fake-html.html", TEXT, ("My First Heading", "Row 1, Cell 1")),
    ("html/unstructured__fake-html-cp1252.html", TEXT, ("Die schöne Frau", "15,50 €", "¡Qué")),
    ("html/unstructured__fake-html-with-base64-image.html", TEXT, ("Test page",)),
    ("html/unstructured__eng_spa_mult.html", TEXT, ("born free and equal", "nacen libres")),
    ("html/unstructured__example-10k-1p.html", TEXT, ("TRANSITION REPORT PURSUANT",)),
    ("html/unstructured__example-10k.html", TEXT, ("SECURITIES AND EXCHANGE COMMISSION",)),
    ("html/unstructured__fake-html-pre.htm", TEXT, ("107th Congress Public Law 56",)),
]


def test_table_lists_every_fixture() -> None:
    if not FORMATS.is_dir():
        pytest.skip(f"real test data not found at {FORMATS}")
    on_disk = {
        str(path.relative_to(FORMATS))
        for path in FORMATS.rglob("*")
        if path.is_file() and path.suffix in {".pdf", ".docx", ".html", ".htm"}
    }
    assert on_disk == {relative for relative, _, _ in FIXTURES}
    assert len(on_disk) == 30


@pytest.mark.parametrize(
    ("relative", "outcome", "expected"), FIXTURES, ids=[relative for relative, _, _ in FIXTURES]
)
def test_fixture_outcome(relative: str, outcome: str, expected: tuple[str, ...]) -> None:
    if outcome == FAIL:
        with pytest.raises(UnreadableDocument) as caught:
            _extract(relative)
        assert str(caught.value) == caught.value.reason == expected[0]
        return
    extracted = _extract(relative)
    _assert_normalised(extracted.text)
    for fragment in expected:
        assert fragment in extracted.text


def test_crazyones_matches_pypdf_ground_truth() -> None:
    expected = normalise(_fixture("pdf/pypdf__crazyones.expected.txt").read_text("utf-8"))
    extracted = _extract("pdf/pypdf__crazyones.pdf")
    assert difflib.SequenceMatcher(None, extracted.text, expected).ratio() > 0.98
    assert extracted.pages == 1


def test_cp1252_html_decodes_every_character() -> None:
    text = _extract("html/unstructured__fake-html-cp1252.html").text
    for fragment in ("köstlich", "lächelte", "L'été était très chaud", "El niño comió", "ñoquis",
                     "Kvinnan åt köttbullar", "O João", "Está ótimo", "4,25 €"):  # fmt: skip
        assert fragment in text
    assert "\ufffd" not in text and "Ã" not in text


def test_pdf_page_count_and_page_join() -> None:
    extracted = _extract("pdf/pypdf__Seige_of_Vicksburg_Sample_OCR.pdf")
    assert extracted.pages == 6
    assert extracted.text.count("\n\n") >= 5  # pages are separated by blank lines


def test_docx_keeps_body_order_with_tables() -> None:
    text = _extract("docx/python-docx__blk-paras-and-tables.docx").text
    order = ["Left-side | Right-side", "Lorem ipsum", "Text before | Table Between | Text after",
             "Donec semper"]  # fmt: skip
    positions = [text.index(fragment) for fragment in order]
    assert positions == sorted(positions)


def test_docx_headers_footers_once_and_hidden_merged_cell_text_dropped() -> None:
    text = _extract("docx/unstructured__docx-hdrftr.docx").text
    assert text.count("First header para") == 1
    assert text.index("First header para") < text.index("Main document") < text.index("para2")
    assert "I should not be included" not in text  # text in a vMerge continuation cell


def test_docx_title_from_first_heading() -> None:
    assert _extract("docx/python-docx__test.docx").title == "python-docx was here!"


def test_html_title_tables_lists_and_pre() -> None:
    fake = _extract("html/unstructured__fake-html.html")
    assert fake.title == "My First Heading"
    assert "Column 1 | Column 2\nRow 1, Cell 1 | Row 1, Cell 2" in fake.text
    assert "- A test list\n- With sub-bullets!" in fake.text
    pre = _extract("html/unstructured__fake-html-pre.htm").text
    assert "[107th Congress Public Law 56]\n[From the U.S. Government Printing Office]" in pre


def test_html_base64_image_is_dropped() -> None:
    text = _extract("html/unstructured__fake-html-with-base64-image.html").text
    assert text == "Test page"


def test_large_10k_html_parses_quickly() -> None:
    started = time.perf_counter()
    extracted = _extract("html/unstructured__example-10k.html")
    elapsed = time.perf_counter() - started
    assert len(extracted.text) > 100_000
    assert elapsed < 30, f"2.4 MB of HTML took {elapsed:.1f} s"  # generous: catches blow-ups


def test_korean_text_survives_normalisation() -> None:
    text = _extract("pdf/unstructured__korean-text-with-tables.pdf").text
    assert sum(1 for char in text if "\uac00" <= char <= "\ud7a3") > 200  # Hangul syllables


def test_k8s_markdown_page() -> None:
    path = K8S_DOCS / "concepts" / "workloads" / "pods" / "_index.md"
    if not path.is_file():
        pytest.skip(f"real test data not found at {path}")
    extracted = extract_text(path.read_bytes(), path.name, None)
    assert extracted.title == "Pods"
    assert extracted.text.startswith("# Pods\n\n")
    assert "{{" not in extracted.text and "<!--" not in extracted.text
    assert "reviewers:" not in extracted.text
    assert "Note:\nYou need to install a container runtime" in extracted.text


# ------------------------------------------------------------------ generated inputs


MARKDOWN = """---
reviewers:
- someone
title: "Pod Lifecycle"
description: >
  How Pods are born
  and die.
weight: 30
---

<!-- overview -->
A {{< glossary_tooltip text="Pod" term_id="pod" >}} runs on a
{{< glossary_tooltip term_id="node" >}}.

{{< note >}}
Be careful.
{{< /note >}}

{{% code_sample file="pods/simple-pod.yaml" %}}

{{< comment >}}hidden remark{{< /comment >}}

## Phases

See [the docs](/docs/concepts/) and ![a diagram](/img/x.svg).
"""


def test_markdown_front_matter_comments_and_shortcodes() -> None:
    extracted = extract_text(MARKDOWN.encode(), "lifecycle.md", None)
    assert extracted.title == "Pod Lifecycle"
    assert extracted.text == (
        "# Pod Lifecycle\n\nHow Pods are born and die.\n\n"
        "A Pod runs on a\nnode.\n\nNote:\nBe careful.\n\n## Phases\n\n"
        "See the docs and a diagram."
    )


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("# Heading One\n\nBody.", "Heading One"),
        ("Setext *Title*\n=====\n\nBody.", "Setext Title"),
        ("---\ntitle: 'Quoted'\n---\nBody.", "Quoted"),
        ('+++\ntitle = "Toml Title"\n+++\nBody.', "Toml Title"),
        ("Plain body without heading.", None),
    ],
)
def test_markdown_titles(text: str, title: str | None) -> None:
    assert extract_text(text.encode(), "doc.md", None).title == title


def test_html_skips_scripts_styles_and_hidden_elements() -> None:
    html = (
        b"<html><head><title>T</title><style>p{color:red}</style></head><body>"
        b"<script>alert('x')</script><noscript>enable js</noscript><svg><text>logo</text></svg>"
        b"<div style='display:none'>secret</div><p>Visible <b>bold</b> text</p>"
        b"<table><tr><td>a</td><td></td><td>b</td></tr></table></body></html>"
    )
    extracted = extract_text(html, "page.html", None)
    assert extracted.title == "T"
    assert extracted.text == "Visible bold text\n\na | b"


def test_html_deep_nesting_does_not_recurse() -> None:
    html = b"<div>" * 1500 + b"deep" + b"</div>" * 1500  # deeper than Python's recursion limit
    assert "deep" in extract_text(html, "deep.html", None).text
    absurd = b"<div>" * 5000 + b"deep" + b"</div>" * 5000  # libxml2 stops at depth 2048
    with pytest.raises(UnreadableDocument, match="no extractable text"):
        extract_text(absurd, "absurd.html", None)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("naïve café".encode("utf-8-sig"), "naïve café"),  # UTF-8 with BOM
        ("naïve café".encode("utf-16"), "naïve café"),  # UTF-16 with BOM
        (b"caf\xe9 \x93quoted\x94 \x80 5", "café “quoted” € 5"),  # not UTF-8: cp1252
        ("héllo wörld ".encode() * 5 + b"\xff!", "héllo wörld " * 5 + "!"),  # mostly UTF-8
        (b"ok \x81\x8d\x8f bytes", "ok bytes"),  # undefined in cp1252: dropped, no crash
    ],
)
def test_text_decoding(data: bytes, expected: str) -> None:
    assert extract_text(data, "notes.txt", None).text == expected


def test_declared_charset_is_used_when_not_utf8() -> None:
    html = b'<html><head><meta charset="iso-8859-2"></head><body><p>\xb1 \xbf</p></body></html>'
    assert extract_text(html, "latin2.html", None).text == "ą ż"
    xml = b'<?xml version="1.0" encoding="koi8-r"?><html><body><p>\xf0\xd2\xc9</p></body></html>'
    assert extract_text(xml, "koi8.html", None).text == "При"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ﬁne ﬂow", "fine flow"),  # ligatures
        ("a\u00a0b\u2003c\t\td", "a b c d"),  # odd spaces and tabs
        ("x\u200by\u00adz\ufeff", "xyz"),  # invisible characters
        ("line  \n   next\r\nthird\rfourth", "line\nnext\nthird\nfourth"),
        ("p1\n\n\n\n\np2", "p1\n\np2"),
        ("bell\x07 nul\x00 esc\x1b", "bell nul esc"),
        ("한국어 텍스트", "한국어 텍스트"),
        ("\u1112\u1161\u11ab", "한"),  # conjoining jamo compose
        ("مرحبا  بالعالم", "مرحبا بالعالم"),
        ("\uff26\uff55\uff4c\uff4c", "Full"),  # full-width Latin letters
        ("O\u02d8guz", "Oguz"),  # stray spacing accent from PDF glyphs
        ("\u0915\u094d\u200d\u0937", "\u0915\u094d\u200d\u0937"),  # ZWJ kept (Devanagari)
    ],
)
def test_normalise(raw: str, expected: str) -> None:
    assert normalise(raw) == expected


def _docx_bytes(document: "docx.document.Document") -> bytes:
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def test_generated_docx_order_tables_and_shared_header() -> None:
    document = docx.Document()
    document.core_properties.title = "Core Title"
    document.sections[0].header.paragraphs[0].text = "Acme header"
    document.add_paragraph("First paragraph.")
    table = document.add_table(rows=2, cols=2)
    for row, values in zip(table.rows, (("h1", "h2"), ("v1", "v2")), strict=True):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    document.add_paragraph("Last paragraph.")
    section = document.add_section()
    section.header.is_linked_to_previous = False
    section.header.paragraphs[0].text = "Acme header"  # same text: still only once
    extracted = extract_text(_docx_bytes(document), "generated.docx", None)
    assert extracted.title == "Core Title"
    assert extracted.text == (
        "Acme header\n\nFirst paragraph.\n\nh1 | h2\nv1 | v2\n\nLast paragraph."
    )


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_docx_zip_bomb_by_ratio() -> None:
    bomb = _zip_bytes({"[Content_Types].xml": b"<Types/>", "word/document.xml": bytes(30_000_000)})
    assert len(bomb) < 200_000
    with pytest.raises(UnreadableDocument, match=r"compression ratio.*zip bomb"):
        extract_text(bomb, "bomb.docx", None)


def test_docx_zip_bomb_by_total_size() -> None:
    block = bytes(1_000_000)  # under the per-part ratio check: only the total gives it away
    members = {"word/document.xml": b"<w:document/>"}
    members.update({f"word/media/pad{index}.bin": block for index in range(210)})
    with pytest.raises(UnreadableDocument, match=r"expand to 2\d\d MB.*zip bomb"):
        extract_text(_zip_bytes(members), "bomb.docx", None)


def _truncated_pdf() -> bytes:
    data = _fixture("pdf/pypdf__crazyones.pdf").read_bytes()
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("name", "data", "content_type", "reason"),
    [
        ("empty.pdf", b"", None, "file is empty"),
        ("blank.md", b" \n\n\t \n", None, "no extractable text"),
        ("random.pdf", os.urandom(4096), None, "not a PDF file: "),
        ("random.docx", os.urandom(4096), None, "not a valid DOCX file: "),
        ("other.docx", _zip_bytes({"a.txt": b"x"}), None, "not a valid DOCX file: "),
        ("broken.docx", _zip_bytes({"word/document.xml": b"<w:document"}), None,
         "not a valid DOCX file: "),
        ("image.xyz", b"hello", None, "unsupported file type '.xyz'"),
        ("upload", b"\x00\x01binary", "image/png", "unsupported content type 'image/png'"),
        ("upload", b"\x00\x01\x02binary", None, "unsupported file type"),
        ("binary.txt", bytes(range(32)) * 64, None, "file looks binary, not text"),
    ],
)  # fmt: skip
def test_unreadable_inputs(name: str, data: bytes, content_type: str | None, reason: str) -> None:
    with pytest.raises(UnreadableDocument) as caught:
        extract_text(data, name, content_type)
    assert str(caught.value).startswith(reason)


def test_truncated_pdf_is_reported_corrupt() -> None:
    with pytest.raises(UnreadableDocument, match=r"^corrupt or truncated PDF: "):
        extract_text(_truncated_pdf(), "truncated.pdf", None)


def test_format_from_content_type_then_magic_bytes() -> None:
    html = b"<p>Hello <i>there</i></p>"
    assert extract_text(html, "upload", "text/html; charset=utf-8").text == "Hello there"
    pdf = _fixture("pdf/pypdf__crazyones.pdf").read_bytes()
    assert extract_text(pdf, "blob.bin", None).pages == 1  # %PDF magic
    document = docx.Document()
    document.add_paragraph("From magic bytes.")
    assert extract_text(_docx_bytes(document), "blob", None).text == "From magic bytes."
    assert extract_text(b"plain words", "README", None).text == "plain words"


def test_markdown_links_keep_their_text() -> None:
    source = b'See [the docs](/docs/x/ "Title"), ![img](<a b.png>) and [k8s](https://k8s.io/a_(b)).'
    assert extract_text(source, "links.md", None).text == "See the docs, img and k8s."


@pytest.mark.parametrize(
    ("source", "text"),
    [
        ("See [the guide][g].\n\n[g]: https://example.com/guide", "See the guide."),
        ("[pod\naffinity](/docs/pod-affinity/) rules", "pod\naffinity rules"),
        ("Go to <https://k8s.io>.", "Go to https://k8s.io."),
        ("**Bold**, `code`, _em_ and ~~struck~~", "Bold, code, em and struck"),
        ("`[x](y)` is literal", "[x](y) is literal"),
        ("AT&amp;T &#124; Container<br>runtime", "AT&T | Container runtime"),
        ("| a | b |\n|---|---|\n| `c` | [d](/d) |", "a | b\nc | d"),
        ("Run:\n```yaml\nkey: value\n```\nDone.", "Run:\n\nkey: value\n\nDone."),
        ("* one\n* two\n\n1. first\n2. second\n\n---\n> quoted",
         "- one\n- two\n\n1. first\n2. second\n\nquoted"),
    ],
    ids=["reference", "multiline", "autolink", "emphasis", "code", "entities-and-html", "table",
         "fence", "lists-rule-quote"],
)  # fmt: skip
def test_markdown_renders_what_a_reader_sees(source: str, text: str) -> None:
    assert extract_text(source.encode(), "page.md", None).text == text


@pytest.mark.parametrize(
    "hostile",
    [b"<!--" * 400_000, b"{{< " * 400_000, b"[x](" * 400_000, b"![x](a(" * 300_000, b"[" * 10**6],
    ids=["unclosed-comments", "unclosed-shortcodes", "unclosed-links", "nested-parens", "brackets"],
)
def test_hostile_markdown_stays_linear(hostile: bytes) -> None:
    started = time.perf_counter()
    assert extract_text(hostile, "hostile.md", None).text
    assert time.perf_counter() - started < 60  # quadratic regexes would take hours


# --------------------------------------------------------------------------- hardening

PDF = text_pdf(["Tide tables for the northern harbour.", "High water is at noon."])
DOCX = docx_file(["Minutes of the rowing club.", "The boathouse roof needs repair."])


@pytest.mark.parametrize("cut", [0.05, 0.5, 0.9, 0.99])
def test_a_truncated_pdf_is_refused_not_partly_read(cut: float) -> None:
    assert extract_text(PDF, "tides.pdf", None).text.startswith("Tide tables")
    with pytest.raises(UnreadableDocument, match=r"truncated PDF: it does not end with %%EOF"):
        extract_text(PDF[: int(len(PDF) * cut)], "tides.pdf", None)


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.999])
def test_a_truncated_docx_is_refused(cut: float) -> None:
    with pytest.raises(UnreadableDocument, match=r"^not a valid DOCX file: "):
        extract_text(DOCX[: int(len(DOCX) * cut)], "club.docx", None)


@pytest.mark.parametrize("algorithm", ["RC4-40", "RC4-128", "AES-128", "AES-256-R5", "AES-256"])
def test_an_encrypted_pdf_says_so(algorithm: str) -> None:
    with pytest.raises(UnreadableDocument) as caught:
        extract_text(encrypted_pdf(PDF, "secret", algorithm), "locked.pdf", None)
    assert caught.value.reason == ENCRYPTED


def test_a_pdf_with_only_an_owner_password_is_read() -> None:
    restricted = encrypted_pdf(PDF, "", "AES-128")  # printing restricted, opening is not
    assert "High water is at noon." in extract_text(restricted, "restricted.pdf", None).text


@pytest.mark.parametrize("pages", [1, 4])
def test_a_pdf_without_text_says_it_needs_ocr(pages: int) -> None:
    with pytest.raises(UnreadableDocument) as caught:
        extract_text(blank_pdf(pages), "scan.pdf", None)
    assert caught.value.reason == NO_TEXT_LAYER


ENCRYPTED_PACKAGE = ["EncryptionInfo", "EncryptedPackage"]


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("png.pdf", SIGNATURES["png"] + bytes(64), "not a PDF file: the content is a PNG image"),
        ("jpeg.pdf", SIGNATURES["jpeg"] + bytes(64), "not a PDF file: the content is a JPEG image"),
        ("docx.pdf", DOCX, "not a PDF file: the content is a DOCX document"),
        ("noise.pdf", b"\x00" * 64, "not a PDF file: it does not start with a %PDF- header"),
        ("pdf.docx", PDF, "not a valid DOCX file: the content is a PDF document"),
        ("gzip.docx", SIGNATURES["gzip"] + bytes(64), "not a valid DOCX file: the content is"),
        ("locked.docx", ole_file(ENCRYPTED_PACKAGE), "DOCX is encrypted (password protected)"),
        ("old.docx", ole_file(["WordDocument"]), "not a valid DOCX file: it is an old-style"),
        ("png.txt", SIGNATURES["png"] + bytes(64), "not a text file: the content is a PNG image"),
        ("pdf.md", PDF, "not a text file: the content is a PDF document"),
        ("docx.txt", DOCX, "not a text file: the content is a DOCX document"),
        ("zip.md", zip_bytes({"a.txt": b"a"}), "not a text file: the content is a ZIP archive"),
        ("elf.html", SIGNATURES["elf"] + bytes(64), "not a text file: the content is a program"),
        ("ole.txt", ole_file(["WordDocument"]), "not a text file: the content is an old-style"),
        ("noise.html", b"\x00" + bytes(range(1, 32)) * 64, "file looks binary, not text"),
        ("noise.md", os.urandom(8192).replace(b"\x89", b"\x00"), "file looks binary, not text"),
    ],
)  # fmt: skip
def test_content_that_is_not_what_its_name_says_is_refused(
    name: str, data: bytes, reason: str
) -> None:
    with pytest.raises(UnreadableDocument) as caught:
        extract_text(data, name, None)
    assert caught.value.reason.startswith(reason)


FRENCH = "L'élève français mangeait à côté de la fenêtre, voilà."
GERMAN = "Die schöne Frau aß köstliche Äpfel und lächelte über die Straße."
RUSSIAN = "Съешь же ещё этих мягких французских булок, да выпей чаю."
JAPANESE = "東京都の天気は晴れです。日本語の文章を書きます。"
CHINESE = "我能吞下玻璃而不伤身体。今天的天气很好。"


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("utf16.txt", "Ferry timetable.".encode("utf-16-le"), "Ferry timetable."),
        ("utf16be.md", "Ferry timetable.".encode("utf-16-be"), "Ferry timetable."),
        ("bom.txt", "Ferry timetable.".encode("utf-16"), "Ferry timetable."),
        ("cp1252.txt", "5 \u20ac \u2013 caf\u00e9".encode("cp1252"), "5 \u20ac \u2013 caf\u00e9"),
        ("latin1.md", "Stra\u00dfe".encode("latin-1"), "Stra\u00dfe"),
        ("damaged.html", "<p>caf\u00e9 na\u00efve ".encode() + b"\xff</p>", "caf\u00e9 na\u00efve"),
        ("sjis.html", '<meta charset="shift_jis">\u6771\u4eac'.encode("shift_jis"), "\u6771\u4eac"),
        # No BOM, no declared charset: the statistics of the bytes decide.
        ("fr.txt", FRENCH.encode("cp1252"), FRENCH),
        ("de16.txt", GERMAN.encode("utf-16-le"), GERMAN),
        ("ru.txt", RUSSIAN.encode("cp1251"), RUSSIAN),
        ("ja.md", JAPANESE.encode("shift_jis"), JAPANESE),
        ("zh.txt", CHINESE.encode("gbk"), CHINESE),
    ],
)  # fmt: skip
def test_text_in_any_encoding_is_read(name: str, data: bytes, expected: str) -> None:
    assert extract_text(data, name, None).text == expected


SMALL = Limits(
    max_text_chars=100,
    max_pdf_pages=2,
    max_docx_uncompressed_bytes=20_000,
    max_docx_ratio=10,
    max_docx_members=5,
)
SMALL_TEXT = Limits(max_text_chars=100)
TOO_LONG = "document text is over the 100-character limit"
MANY_PARTS = zip_bytes({"word/document.xml": b"<x/>", **{f"p{n}.xml": b"<x/>" for n in range(5)}})
BOMB = zip_bytes({"word/document.xml": bytes(2 * 1024 * 1024)})


@pytest.mark.parametrize(
    ("name", "data", "limits", "reason"),
    [
        ("long.txt", b"word " * 21, SMALL, TOO_LONG),
        ("long.md", b"word " * 21, SMALL, TOO_LONG),
        ("long.html", b"<p>" + b"word " * 21 + b"</p>", SMALL, TOO_LONG),
        ("long.docx", docx_file(["word " * 21]), SMALL_TEXT, TOO_LONG),
        ("long.pdf", text_pdf(["word " * 21]), SMALL_TEXT, TOO_LONG),
        ("pages.pdf", blank_pdf(3), SMALL, "PDF has 3 pages (limit 2)"),
        ("big.docx", DOCX, Limits(max_docx_uncompressed_bytes=20_000), "DOCX would expand to"),
        ("parts.docx", MANY_PARTS, SMALL, "DOCX has 6 parts (limit 5)"),
        ("ratio.docx", BOMB, Limits(max_docx_ratio=10), "DOCX part 'word/document.xml' has an"
         " implausible compression ratio"),
        ("inflated.docx", BOMB, Limits(max_docx_ratio=10_000), "not a valid DOCX file: "),
    ],
)  # fmt: skip
def test_limits_refuse_a_document_before_it_explodes(
    name: str, data: bytes, limits: Limits, reason: str
) -> None:
    with pytest.raises(UnreadableDocument) as caught:
        extract_text(data, name, None, limits)
    assert caught.value.reason.startswith(reason)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (KeyError("word/styles.xml"), "could not read the text file: 'word/styles.xml'"),
        (AssertionError(), "could not read the text file: AssertionError"),
        (MemoryError(), "the text file needs too much memory to read"),
        (RecursionError(), "the text file is nested too deeply to read"),
    ],
)
def test_any_exception_of_a_parser_becomes_a_reason(
    monkeypatch: pytest.MonkeyPatch, error: BaseException, reason: str
) -> None:
    """A stand-in parser raises what libraries raise on hostile files (no real file provokes
    each of these reliably)."""

    def failing(data: bytes, limits: Limits) -> ExtractedText:
        raise error

    monkeypatch.setattr(txt, "extract", failing)
    with pytest.raises(UnreadableDocument) as caught:
        extract_text(b"anything", "a.txt", None)
    assert caught.value.reason == reason
