"""Ranking and answer metrics: pure functions, no I/O.

Rankings are lists of document names, best first; relevance judgements map a document name to
its grade (SQuAD: the one gold paragraph with grade 1; BEIR: the graded qrels, where grade 0
means judged not relevant). Answer scoring follows the official SQuAD v1.1 script.
"""

import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

Ranking = Sequence[str]
Judgements = Mapping[str, int]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)
# "[1]", "[2, 3]", "[1][4]", with the space before them.
_CITATION = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")


def _relevant(judgements: Judgements) -> set[str]:
    return {name for name, grade in judgements.items() if grade > 0}


def recall_at(ranking: Ranking, judgements: Judgements, k: int) -> float:
    """The share of the relevant documents found in the first `k`."""
    relevant = _relevant(judgements)
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranking[:k])) / len(relevant)


def reciprocal_rank(ranking: Ranking, judgements: Judgements, k: int) -> float:
    """1 / the rank of the first relevant document within the first `k`, else 0."""
    relevant = _relevant(judgements)
    for rank, name in enumerate(ranking[:k], start=1):
        if name in relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at(ranking: Ranking, judgements: Judgements, k: int) -> float:
    """nDCG@k with linear gains (the grade), as trec_eval and BEIR compute it."""

    def dcg(grades: Iterable[int]) -> float:
        return sum(grade / math.log2(rank + 1) for rank, grade in enumerate(grades, start=1))

    ideal = dcg(sorted((g for g in judgements.values() if g > 0), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg(max(judgements.get(name, 0), 0) for name in ranking[:k]) / ideal


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, golds: Iterable[str]) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer."""
    predicted = normalize_answer(prediction)
    return float(any(predicted == normalize_answer(gold) for gold in golds))


def f1(prediction: str, golds: Iterable[str]) -> float:
    """The best token-overlap F1 of the prediction against the gold answers."""
    predicted = normalize_answer(prediction).split()
    best = 0.0
    for gold in golds:
        expected = normalize_answer(gold).split()
        common = sum((Counter(predicted) & Counter(expected)).values())
        if common:
            precision, recall = common / len(predicted), common / len(expected)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def strip_citations(answer: str) -> str:
    """The answer without citation markers, which are no part of the answer's words."""
    return _CITATION.sub("", answer).strip()


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolated linearly between the closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: Sequence[float]) -> dict[str, float] | None:
    """p50 and p95 in the report's rounding; None when nothing was measured."""
    if not values:
        return None
    return {f"p{q}": round(percentile(values, q), 1) for q in (50, 95)}


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def cutoffs(top_k: int) -> list[int]:
    """The ranks recall is reported at: 1, 5 and 10 where the ranking is that long, and top_k."""
    return sorted({k for k in (1, 5, 10) if k <= top_k} | {top_k})


def score_rankings(
    rankings: Sequence[Ranking], judgements: Sequence[Judgements], top_k: int
) -> dict[str, float]:
    """Mean recall@k, MRR (within top_k) and nDCG@10 (or @top_k when shorter) over queries;
    a query that failed has an empty ranking and scores 0."""
    if len(rankings) != len(judgements):
        raise ValueError(f"{len(rankings)} rankings for {len(judgements)} judgements")
    pairs = list(zip(rankings, judgements, strict=True))
    scores = {f"recall@{k}": mean([recall_at(r, j, k) for r, j in pairs]) for k in cutoffs(top_k)}
    scores["mrr"] = mean([reciprocal_rank(r, j, top_k) for r, j in pairs])
    depth = min(10, top_k)
    scores[f"ndcg@{depth}"] = mean([ndcg_at(r, j, depth) for r, j in pairs])
    return {name: round(value, 4) for name, value in scores.items()}
