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

from services.chunker.parsers import ExtractedText, UnreadableDocument, extract_text, normalise

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
        ("random.pdf", os.urandom(4096), None, "corrupt or truncated PDF: "),
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
    "hostile",
    [b"<!--" * 400_000, b"{{< " * 400_000, b"[x](" * 400_000, b"![x](a(" * 300_000, b"[" * 10**6],
    ids=["unclosed-comments", "unclosed-shortcodes", "unclosed-links", "nested-parens", "brackets"],
)
def test_hostile_markdown_stays_linear(hostile: bytes) -> None:
    started = time.perf_counter()
    assert extract_text(hostile, "hostile.md", None).text
    assert time.perf_counter() - started < 20  # quadratic regexes would take hours
