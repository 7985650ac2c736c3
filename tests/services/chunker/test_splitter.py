"""Splitter invariants: token bound, overlap, coverage, determinism, degenerate inputs."""

import itertools
import random
import re
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from ragbus.adapters.embedding.model_files import load_tokenizer
from services.chunker.parsers import extract_text
from services.chunker.splitter import SPECIAL_TOKENS, ChunkSpan, split_text

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]
K8S_DOCS = REPO_ROOT.parent / "shared" / "data" / "k8s-docs"

SENTENCES = [
    "Kubernetes schedules Pods onto nodes that have enough free resources.",
    "A controller watches the shared state of the cluster through the API server.",
    "Each container in a Pod shares the network namespace, including the IP address.",
    "Volumes outlive containers, so data survives a container restart.",
    "Labels are key/value pairs attached to objects such as Pods.",
]
PROSE = "\n\n".join(
    " ".join(SENTENCES[(index + shift) % len(SENTENCES)] for shift in range(4))
    for index in range(40)
)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return load_tokenizer(max_tokens=0, pad=False)


def _count(tokenizer: Tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def _check_invariants(
    text: str, chunks: list[ChunkSpan], tokenizer: Tokenizer, max_tokens: int
) -> None:
    """Bounded, exact counts, non-empty, in order, and covering every non-space character."""
    assert chunks
    covered = 0
    previous_start = -1
    for chunk in chunks:
        assert chunk.text and chunk.text == chunk.text.strip()
        assert chunk.text == text[chunk.char_start : chunk.char_end]
        assert chunk.token_count == _count(tokenizer, chunk.text)
        assert chunk.token_count <= max_tokens - SPECIAL_TOKENS
        assert chunk.char_start > previous_start
        assert not text[covered : chunk.char_start].strip(), "text skipped between chunks"
        covered = max(covered, chunk.char_end)
        previous_start = chunk.char_start
    assert not text[covered:].strip()


@pytest.mark.parametrize("text", ["", " ", "\n\n\t  \n"])
def test_empty_text_gives_no_chunks(text: str, tokenizer: Tokenizer) -> None:
    assert split_text(text, tokenizer) == []


def test_short_text_is_one_chunk(tokenizer: Tokenizer) -> None:
    text = "  Hello world. A second sentence.\n"
    assert split_text(text, tokenizer) == [ChunkSpan("Hello world. A second sentence.", 7, 2, 33)]


@pytest.mark.parametrize(
    ("max_tokens", "overlap_tokens"), [(256, 32), (128, 16), (64, 8), (32, 0), (16, 4), (4, 1)]
)
def test_invariants_on_prose(max_tokens: int, overlap_tokens: int, tokenizer: Tokenizer) -> None:
    chunks = split_text(PROSE, tokenizer, max_tokens, overlap_tokens)
    _check_invariants(PROSE, chunks, tokenizer, max_tokens)
    assert len(chunks) > 1


def test_model_limit_includes_special_tokens(tokenizer: Tokenizer) -> None:
    for chunk in split_text(PROSE, tokenizer, 256, 32):
        assert len(tokenizer.encode(chunk.text).ids) <= 256  # with [CLS] and [SEP]


def test_overlap_repeats_the_end_of_the_previous_chunk(tokenizer: Tokenizer) -> None:
    chunks = split_text(PROSE, tokenizer, 128, 32)
    for before, after in itertools.pairwise(chunks):
        assert after.char_start < before.char_end, "no overlap"
        shared = PROSE[after.char_start : before.char_end]
        assert before.text.endswith(shared) and after.text.startswith(shared)
        assert 8 <= _count(tokenizer, shared) <= 32
        # snapped: the overlap starts a word (here, always a sentence) of the previous chunk
        assert PROSE[after.char_start - 1].isspace()
        assert re.search(r"[.!?]\s+$", PROSE[: after.char_start])


def test_no_overlap_when_disabled(tokenizer: Tokenizer) -> None:
    chunks = split_text(PROSE, tokenizer, 64, 0)
    for before, after in itertools.pairwise(chunks):
        assert after.char_start >= before.char_end


def test_paragraphs_are_kept_whole_when_they_fit(tokenizer: Tokenizer) -> None:
    paragraphs = PROSE.split("\n\n")
    chunks = split_text(PROSE, tokenizer, 256, 0)
    for chunk in chunks:
        assert chunk.text.split("\n\n")[0] in paragraphs
        assert chunk.text.split("\n\n")[-1] in paragraphs


def test_long_paragraph_is_cut_at_sentence_ends(tokenizer: Tokenizer) -> None:
    paragraph = " ".join(SENTENCES * 20)
    chunks = split_text(paragraph, tokenizer, 64, 0)
    _check_invariants(paragraph, chunks, tokenizer, 64)
    assert all(chunk.text.endswith(".") for chunk in chunks)


@pytest.mark.parametrize(
    "text",
    [
        "-".join(["segment"] * 2000),  # punctuation but no spaces
        "漢字" * 1500,  # CJK: one token per character, no spaces
        "한" * 900,  # Hangul: one >100-char word, a single [UNK]
        "x" * 20_000,  # one enormous word: a single [UNK] token
        "a1b2c3d4e5f6g7h8i9j0" * 4,  # under the 100-char limit: many word pieces
        "短句。" * 600,  # CJK full stops without spaces
        " ".join(["supercalifragilisticexpialidocious"] * 300),
    ],
    ids=["hyphenated", "cjk", "hangul", "unk-word", "word-pieces", "cjk-sentences", "long-words"],
)
def test_one_long_sentence_without_spaces(text: str, tokenizer: Tokenizer) -> None:
    for max_tokens, overlap in ((256, 32), (24, 4)):
        chunks = split_text(text, tokenizer, max_tokens, overlap)
        _check_invariants(text, chunks, tokenizer, max_tokens)


def test_deterministic(tokenizer: Tokenizer) -> None:
    assert split_text(PROSE, tokenizer, 100, 20) == split_text(PROSE, tokenizer, 100, 20)


def test_truncating_tokenizer_is_not_a_problem() -> None:
    """The model's default tokenizer truncates at 256 and pads; splitting must not inherit it."""
    padded = load_tokenizer()
    plain = load_tokenizer(max_tokens=0, pad=False)
    assert split_text(PROSE, padded) == split_text(PROSE, plain)


@pytest.mark.parametrize(
    ("max_tokens", "overlap_tokens"), [(2, 0), (0, 0), (10, 8), (10, -1), (256, 254)]
)
def test_invalid_limits(max_tokens: int, overlap_tokens: int, tokenizer: Tokenizer) -> None:
    with pytest.raises(ValueError):
        split_text("some text", tokenizer, max_tokens, overlap_tokens)


def test_k8s_pages(tokenizer: Tokenizer) -> None:
    """A sample of the real corpus, through the parser, holds every invariant."""
    if not K8S_DOCS.is_dir():
        pytest.skip(f"real test data not found at {K8S_DOCS}")
    pages = sorted(path for path in K8S_DOCS.rglob("*.md") if path.name != "SOURCE.md")
    for path in pages[::15]:
        text = extract_text(path.read_bytes(), path.name, None).text
        _check_invariants(text, split_text(text, tokenizer), tokenizer, 256)


def test_tiny_budget_never_splits_a_character(tokenizer: Tokenizer) -> None:
    text = "한국어 텍스트는 음절마다 토큰이 여러 개입니다. " * 10  # 3 tokens per syllable
    chunks = split_text(text, tokenizer, max_tokens=5, overlap_tokens=1)
    _check_invariants(text, chunks, tokenizer, 5)


@pytest.mark.parametrize("seed", range(20))
def test_random_texts_hold_every_invariant(seed: int, tokenizer: Tokenizer) -> None:
    rng = random.Random(seed)
    pieces = ["word", "Kubernetes", "pod", ".", "!", "?", ",", " ", " ", " ", "\n", "\n\n",
              "漢", "字", "。", "한국", "x" * 120, "naïve", "“quoted.”", "\t", "-"]  # fmt: skip
    text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 3000)))
    max_tokens = rng.choice([8, 16, 40, 128, 256])
    overlap = rng.randint(0, (max_tokens - SPECIAL_TOKENS) // 2)
    chunks = split_text(text, tokenizer, max_tokens, overlap)
    if text.strip():
        _check_invariants(text, chunks, tokenizer, max_tokens)
    else:
        assert chunks == []
