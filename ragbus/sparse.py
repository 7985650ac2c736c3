"""BM25-style sparse vectors for lexical retrieval.

The document side carries BM25's saturated, length-normalised term frequency; the inverse
document frequency is left to the store (Qdrant's IDF modifier computes it over the collection at
query time), so a vector written today stays right as the corpus grows. A query weighs each of its
distinct terms 1. Terms are casefolded words, English stop words dropped, Snowball-stemmed, and
hashed to a stable 32-bit index (Python's `hash` changes between processes; blake2b does not).
"""

import hashlib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import snowballstemmer

K1 = 1.2
B = 0.75
# The average chunk length in terms (256-token windows less their stop words), BM25's `avgdl`.
AVERAGE_TERMS = 130.0

WORD = re.compile(r"[^\W_]+")
_STOP_WORD_LIST = """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can did do does doing down during each few for from further had has
    have having he her here hers herself him himself his how i if in into is it its itself just me
    more most my myself no nor not now of off on once only or other our ours ourselves out over own
    same she should so some such than that the their theirs them themselves then there these they
    this those through to too under until up very was we were what when where which while who whom
    why will with would you your yours yourself yourselves"""
STOP_WORDS = frozenset(_STOP_WORD_LIST.split())

_stemmer = snowballstemmer.stemmer("english")


@dataclass(frozen=True)
class SparseVector:
    indices: tuple[int, ...]
    values: tuple[float, ...]

    def __bool__(self) -> bool:
        return bool(self.indices)


@lru_cache(maxsize=200_000)
def _term_index(word: str) -> int:
    stem: str = _stemmer.stemWord(word)
    return int.from_bytes(hashlib.blake2b(stem.encode(), digest_size=4).digest(), "little")


def terms(text: str) -> list[int]:
    """The term indices of `text`, in order, stop words removed."""
    words = WORD.findall(unicodedata.normalize("NFKC", text).casefold())
    return [_term_index(word) for word in words if word not in STOP_WORDS]


def encode_document(text: str) -> SparseVector:
    """BM25 term weights of a passage: tf·(k1+1) / (tf + k1·(1 - b + b·len/avglen))."""
    counts = Counter(terms(text))
    norm = K1 * (1 - B + B * sum(counts.values()) / AVERAGE_TERMS)
    ordered = sorted(counts.items())
    return SparseVector(
        tuple(index for index, _ in ordered),
        tuple(round(tf * (K1 + 1) / (tf + norm), 4) for _, tf in ordered),
    )


def encode_query(text: str) -> SparseVector:
    """Each distinct query term once, weight 1: the store multiplies in its IDF."""
    indices = tuple(sorted(set(terms(text))))
    return SparseVector(indices, (1.0,) * len(indices))
