"""The answer cache: a finished answer is reused for the same question asked the same way over
the same index, until it expires or `index.promoted` says the index changed.

Keys also carry the cache's epoch, which every `clear` advances: an answer computed from the old
index and stored after the clear lands under a key no later lookup makes, so it is never served.
"""

import hashlib
import time
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import orjson
from cachetools import TTLCache

from ragbus import metrics

T = TypeVar("T")


def normalise_question(text: str) -> str:
    """The question as the cache compares it: NFKC, casefolded, single spaces, and without the
    punctuation and quotes around it ("What is Kafka?" is "what is kafka")."""
    folded = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    start, end = 0, len(folded)
    while start < end and _is_edge(folded[start]):
        start += 1
    while end > start and _is_edge(folded[end - 1]):
        end -= 1
    return folded[start:end]


def _is_edge(char: str) -> bool:
    return char.isspace() or unicodedata.category(char).startswith("P")


class AnswerCache(Generic[T]):
    """A bounded LRU map of answers whose entries expire `ttl_s` seconds after they were stored.

    `max_entries=0` disables it: nothing is stored, every lookup misses.
    """

    def __init__(
        self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 0 or ttl_s <= 0:
            raise ValueError("max_entries must be >= 0 and ttl_s > 0")
        self._entries: TTLCache[str, T, float] = TTLCache(max_entries, ttl_s, timer=clock)
        self._epoch = 0

    def __len__(self) -> int:
        return len(self._entries)

    def key(
        self,
        tenant_id: str,
        question: str,
        filters: Mapping[str, Any],
        generation: int,
        **options: Any,
    ) -> str:
        """A stable digest of everything that shapes an answer (`options`: mode, top_k,
        rerank, generate, model) and of the current epoch."""
        material = {
            "tenant": tenant_id,
            "question": normalise_question(question),
            "filters": dict(filters),
            "generation": generation,
            "options": options,
            "epoch": self._epoch,
        }
        return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def get(self, key: str) -> T | None:
        value = self._entries.get(key)
        metrics.QUERY_CACHE.labels("miss" if value is None else "hit").inc()
        return value

    def put(self, key: str, value: T) -> None:
        if self._entries.maxsize > 0:  # a cache of size 0 refuses every item with ValueError
            self._entries[key] = value

    def clear(self) -> int:
        """Drop every answer and start a new epoch; returns how many were dropped."""
        dropped = len(self._entries)
        self._entries.clear()
        self._epoch += 1
        metrics.QUERY_CACHE_DROPPED.inc(dropped)
        return dropped
