"""Split normalised text into token-bounded, overlapping chunks for the embedding model.

The text is tokenised once with offsets; every later decision (does this paragraph fit, where
does the overlap start) is index arithmetic on those offsets, so splitting costs about one
tokeniser pass however the text is shaped. Boundaries are at whitespace or between words,
which is where the model's pre-tokeniser splits too: re-tokenising a chunk's text gives the same
tokens, so `token_count` is exact, not an estimate. Only a single word with more tokens than a
chunk may hold (possible with small limits) is cut inside; those pieces are counted by
re-tokenising them, since a word's tail tokenises differently on its own.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from operator import itemgetter
from typing import NamedTuple

from tokenizers import Encoding, Tokenizer

__all__ = ["SPECIAL_TOKENS", "ChunkSpan", "split_text"]

# [CLS] and [SEP] are added by the embedder; the chunk's own tokens must leave room for them.
SPECIAL_TOKENS = 2


@dataclass(frozen=True, slots=True)
class ChunkSpan:
    """One chunk: `text == source[char_start:char_end]`; `token_count` excludes specials."""

    text: str
    token_count: int
    char_start: int
    char_end: int


class _Unit(NamedTuple):
    """A piece of text that is never cut: chars [start, end), tokens [first, stop).

    `fresh` marks a piece that begins inside a word: its `tokens` come from re-tokenising it,
    and it must open a chunk of its own (glued to the text before it, the word would re-form).
    """

    start: int
    end: int
    first: int
    stop: int
    tokens: int
    fresh: bool = False


# Coarse to fine: blank lines (paragraphs), sentence ends, single line breaks. Group 1 is the
# separator: whitespace only (empty after CJK full stops), so no text is lost between pieces.
_PARAGRAPH = re.compile(r"(\n[^\S\n]*\n\s*)")
_CLOSING_MARKS = "\"'\u201d\u2019\u00bb)\\]"  # quotes/brackets that may follow a full stop
_CJK_STOPS = "\u3002\uff01\uff1f\uff61"  # CJK full stops, !, ?: no space follows them
_SENTENCE = re.compile(
    rf"(?:[.!?\u2026][{_CLOSING_MARKS}]*(?=\s)|[{_CJK_STOPS}][{_CLOSING_MARKS}]*)(\s*)"
)
_LINE = re.compile(r"(\s*\n\s*)")
_LEVELS = (_PARAGRAPH, _SENTENCE, _LINE)
_FULL_STOPS = frozenset(".!?\u2026" + _CJK_STOPS)
_START = itemgetter(0)
_CLOSERS = frozenset("\"'\u201d\u2019\u00bb)]")


def _unlimited(tokenizer: Tokenizer) -> Tokenizer:
    """The tokenizer itself, or a copy without truncation/padding (they would corrupt offsets)."""
    if tokenizer.truncation is None and tokenizer.padding is None:
        return tokenizer
    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


class _Splitter:
    """State for one text: its token offsets and the limits."""

    def __init__(
        self, text: str, tokenizer: Tokenizer, encoding: Encoding, budget: int, overlap: int
    ) -> None:
        self.text = text
        self.tokenizer = tokenizer
        self.offsets = encoding.offsets
        self.words = encoding.word_ids
        self.budget = budget
        self.overlap = overlap

    # ---------------------------------------------------------------- boundaries

    def _token(self, char: int) -> int:
        """Index of the first token starting at or after `char`."""
        return bisect_left(self.offsets, char, key=_START)

    def _separates(self, index: int) -> bool:
        """Token `index` starts a new stretch of characters (Hangul syllables emit several
        tokens for one character; those can never be pulled apart)."""
        return self.offsets[index][0] >= self.offsets[index - 1][1]

    def _word_start(self, index: int) -> bool:
        """Token `index` starts a pre-tokeniser word: cutting here keeps counts exact."""
        return self.words[index] != self.words[index - 1] and self._separates(index)

    def _spaced(self, index: int) -> bool:
        return self._word_start(index) and self.offsets[index][0] > self.offsets[index - 1][1]

    def _sentence_start(self, index: int) -> bool:
        if not self._spaced(index):
            return False
        before = self.offsets[index - 1][1]
        if "\n" in self.text[before : self.offsets[index][0]]:
            return True
        last = before - 1
        while last > 0 and self.text[last] in _CLOSERS:
            last -= 1
        return self.text[last] in _FULL_STOPS

    def _strip(self, start: int, end: int) -> tuple[int, int]:
        text = self.text
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        return start, end

    # ---------------------------------------------------------------- units

    def units(self) -> Iterator[_Unit]:
        start, end = self._strip(0, len(self.text))
        yield from self._split(start, end, 0)

    def _split(self, start: int, end: int, level: int) -> Iterator[_Unit]:
        """Yield pieces no bigger than the budget, using the coarsest boundaries that work."""
        first, stop = self._token(start), self._token(end)
        if stop - first <= self.budget:
            yield _Unit(start, end, first, stop, stop - first)
            return
        if level == len(_LEVELS):
            yield from self._windows(start, end, first, stop)
            return
        piece_start = start
        for match in _LEVELS[level].finditer(self.text, start, end):
            yield from self._piece(piece_start, match.start(1), level + 1)
            piece_start = match.end(1)
        yield from self._piece(piece_start, end, level + 1)

    def _piece(self, start: int, end: int, level: int) -> Iterator[_Unit]:
        start, end = self._strip(start, end)
        if start < end:
            yield from self._split(start, end, level)

    def _windows(self, start: int, end: int, first: int, stop: int) -> Iterator[_Unit]:
        """A sentence longer than the budget: cut it between words every budget-overlap
        tokens, so the next chunk still has room for its overlap."""
        size = self.budget - self.overlap
        index = first
        while index < stop:
            fresh = index != first and not self._word_start(index)
            limit = self.budget if fresh else size  # a fresh piece gets no overlap
            cut = stop if stop - index <= limit else self._word_cut(index, index + limit)
            if cut is None:  # a single word longer than the window
                cut = self._char_cut(index, index + limit, stop)
            piece_start = start if index == first else self.offsets[index][0]
            piece_end = self._end(piece_start, end, cut, stop)
            tokens = cut - index
            while fresh:  # its tokens are not the in-context ones: count, shrink to fit
                tokens = self._count(piece_start, piece_end)
                shorter = self._char_cut(index, cut - 1, cut) if cut - 1 > index else cut
                if tokens <= limit or shorter >= cut:
                    break
                cut = shorter
                piece_end = self._end(piece_start, end, cut, stop)
            yield _Unit(piece_start, piece_end, index, cut, tokens, fresh)
            index = cut

    def _end(self, piece_start: int, end: int, cut: int, stop: int) -> int:
        return end if cut == stop else self._strip(piece_start, self.offsets[cut][0])[1]

    def _count(self, start: int, end: int) -> int:
        return len(self.tokenizer.encode(self.text[start:end], add_special_tokens=False).ids)

    def _word_cut(self, low: int, cut: int) -> int | None:
        """The latest word start in (low, cut], preferring whitespace in the back half."""
        half = max(low, cut - (cut - low) // 2)
        for test, floor in ((self._spaced, half), (self._word_start, low)):
            for index in range(cut, floor, -1):
                if test(index):
                    return index
        return None

    def _char_cut(self, low: int, cut: int, stop: int) -> int:
        """The latest cut in (low, cut] between two characters; never inside one, even when
        its tokens alone exceed an absurdly small budget."""
        for index in range(cut, low, -1):
            if self._separates(index):
                return index
        return next((index for index in range(cut + 1, stop) if self._separates(index)), stop)

    # ---------------------------------------------------------------- packing

    def _overlap_start(self, first: int, stop: int, room: int) -> int | None:
        """First token of the overlap copied from the chunk [first, stop): at most `room`
        tokens, preferably starting a sentence, else a word."""
        want = min(self.overlap, room)
        if want <= 0:
            return None
        low = max(first + 1, stop - want)
        word: int | None = None
        loose: int | None = None
        for index in range(low, stop):
            if index <= stop - max(want // 2, 1) and self._sentence_start(index):
                return index
            if word is None and self._spaced(index):
                word = index
            if loose is None and self._word_start(index):
                loose = index
        return word if word is not None else loose

    def chunks(self) -> list[ChunkSpan]:
        """Greedy packing: add units while they fit, then open the next chunk with overlap."""
        chunks: list[ChunkSpan] = []
        start = end = first = stop = count = -1
        for unit in self.units():
            if stop >= 0 and not unit.fresh and count + unit.tokens <= self.budget:
                end, stop, count = unit.end, unit.stop, count + unit.tokens
                continue
            overlap = None
            if stop >= 0:
                chunks.append(ChunkSpan(self.text[start:end], count, start, end))
                if not unit.fresh:
                    overlap = self._overlap_start(first, stop, self.budget - unit.tokens)
            if overlap is None:
                start, first, count = unit.start, unit.first, unit.tokens
            else:
                start, first = self.offsets[overlap][0], overlap
                count = unit.first - overlap + unit.tokens
            end, stop = unit.end, unit.stop
        if stop >= 0:
            chunks.append(ChunkSpan(self.text[start:end], count, start, end))
        return chunks


def split_text(
    text: str, tokenizer: Tokenizer, max_tokens: int = 256, overlap_tokens: int = 32
) -> list[ChunkSpan]:
    """Split `text` into chunks of at most `max_tokens` model tokens including [CLS]/[SEP].

    Paragraphs are kept whole when they fit, then sentences, then lines; only a single
    over-long sentence is cut between words. Units are packed greedily and each chunk after
    the first repeats about `overlap_tokens` tokens from the end of the previous one (starting
    at a sentence or word), so a fact split across a boundary is still retrievable. The
    result is deterministic and covers all non-whitespace text in order.
    """
    if max_tokens <= SPECIAL_TOKENS:
        raise ValueError(f"max_tokens must exceed {SPECIAL_TOKENS} (room for [CLS]/[SEP])")
    budget = max_tokens - SPECIAL_TOKENS
    if not 0 <= overlap_tokens < budget:
        raise ValueError(f"overlap_tokens must be in [0, {budget})")
    if not text.strip():
        return []
    tokenizer = _unlimited(tokenizer)
    encoding = tokenizer.encode(text, add_special_tokens=False)
    return _Splitter(text, tokenizer, encoding, budget, overlap_tokens).chunks()
