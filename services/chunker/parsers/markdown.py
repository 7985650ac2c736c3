"""Markdown (and Hugo pages) as the text a reader sees: markup, link targets, comments and
shortcodes go; headings keep their `#`s and list items their markers, as chunk structure."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

from markdown_it import MarkdownIt
from markdown_it.token import Token

from .common import (
    DATA_URI,
    LINE_BREAKS,
    ExtractedText,
    Limits,
    check_length,
    clean_title,
    normalise,
)
from .txt import read_text_file

# CommonMark plus GitHub's tables and strikethrough. Its nesting limit (20) drops the text of
# lists nested over 9 deep, but hostile input costs in proportion to it: 1 MB of "[" parses in
# 8.5 s at 20, 43 s at 100 (measured).
_MARKDOWN = MarkdownIt("commonmark").enable(["table", "strikethrough"])

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


def _drop_blocks(text: str, opener: re.Pattern[str], closer: re.Pattern[str]) -> str:
    """Remove every opener...closer block in one linear pass (a lazy `.*?` regex goes
    quadratic on many unclosed openers). An unclosed block is left as it is, where markdown
    would hide the rest of the document."""
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


def _inline_text(children: Sequence[Token]) -> str:
    """What a reader sees of a paragraph: link text without its target, an image's alt text;
    emphasis carries no words of its own, and an inline HTML tag at most a break ("a<br>b")."""
    parts: list[str] = []
    for child in children:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif child.type == "html_inline":
            parts.append(" ")
        elif child.type == "image":
            parts.append(_inline_text(child.children or ()))
    return "".join(parts)


def _render(tokens: Sequence[Token]) -> str:
    """Blocks apart by a blank line (items of a tight list by a line break), table rows as
    "cell | cell" lines as the other formats write them."""
    out: list[str] = []
    for index, token in enumerate(tokens):
        kind = token.type
        if kind == "heading_open":
            out.append("#" * int(token.tag[1:]) + " ")
        elif kind == "list_item_open":
            out.append(f"{token.info}{token.markup} " if token.info else "- ")
        elif kind in ("th_open", "td_open") and tokens[index - 1].type in ("th_close", "td_close"):
            out.append(" | ")
        elif kind == "inline":
            out.append(_inline_text(token.children or ()))
        elif kind in ("fence", "code_block", "html_block"):
            out.append(token.content + "\n")
        elif kind in ("paragraph_close", "heading_close", "tr_close"):
            out.append("\n" if token.hidden or kind == "tr_close" else "\n\n")
        if token.nesting == -1 and token.level == 0:  # the end of a top-level block
            out.append("\n\n")
    return "".join(out)


def _first_heading(tokens: Sequence[Token]) -> str | None:
    for heading, inline in itertools.pairwise(tokens):
        if heading.type == "heading_open":
            return _inline_text(inline.children or ())
    return None


def extract(data: bytes, limits: Limits) -> ExtractedText:
    text = read_text_file(data)
    check_length(len(text), limits)
    text = LINE_BREAKS.sub("\n", text).lstrip("\ufeff")
    title: str | None = None
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
    tokens = _MARKDOWN.parse(text)
    body = DATA_URI.sub("", _render(tokens))
    return ExtractedText(text=normalise(body), title=clean_title(title or _first_heading(tokens)))
