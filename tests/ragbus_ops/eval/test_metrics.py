import math

import pytest

from ragbus_ops.eval.metrics import (
    cutoffs,
    exact_match,
    f1,
    ndcg_at,
    normalize_answer,
    percentile,
    recall_at,
    reciprocal_rank,
    score_rankings,
    strip_citations,
    summary,
)

pytestmark = pytest.mark.unit

GRADED = {"a": 2, "b": 1, "z": 0}


@pytest.mark.parametrize(
    ("ranking", "judgements", "k", "expected"),
    [
        (["x", "b", "c"], {"b": 1}, 1, 0.0),
        (["x", "b", "c"], {"b": 1}, 2, 1.0),
        (["z", "b", "a"], GRADED, 2, 0.5),  # grade 0 is judged, not relevant
        (["z", "b", "a"], GRADED, 3, 1.0),
        (["a"], {"a": 0}, 1, 0.0),  # nothing relevant: nothing to find
        ([], {"a": 1}, 10, 0.0),  # a failed query
    ],
)
def test_recall_at(ranking, judgements, k, expected):
    assert recall_at(ranking, judgements, k) == expected


@pytest.mark.parametrize(
    ("ranking", "k", "expected"),
    [(["b", "x"], 10, 1.0), (["x", "y", "b"], 10, 1 / 3), (["x", "y", "b"], 2, 0.0)],
)
def test_reciprocal_rank_counts_only_the_first_k(ranking, k, expected):
    assert reciprocal_rank(ranking, {"b": 1}, k) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("ranking", "k", "expected"),
    [
        (["a", "b"], 10, 1.0),  # the ideal order
        (["z", "b", "a"], 3, (1 / math.log2(3) + 2 / 2) / (2 + 1 / math.log2(3))),
        (["b", "a"], 1, 0.5),  # at 1: grade 1 where 2 was possible
        (["x", "y"], 10, 0.0),
    ],
)
def test_ndcg_uses_linear_graded_gains(ranking, k, expected):
    assert ndcg_at(ranking, GRADED, k) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Denver Broncos!", "denver broncos"),
        ("  an   apple,  a pear ", "apple pear"),
        ("Theatre", "theatre"),  # articles only as whole words
        ("1,000", "1000"),
    ],
)
def test_normalize_answer_as_the_official_script(text, expected):
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(
    ("prediction", "golds", "em", "f1_score"),
    [
        ("the Denver Broncos", ["Denver Broncos", "Broncos"], 1.0, 1.0),
        ("Denver Broncos team", ["Denver Broncos"], 0.0, 0.8),
        ("Broncos", ["Denver Broncos", "Broncos"], 1.0, 1.0),  # max over golds
        ("Carolina Panthers", ["Denver Broncos"], 0.0, 0.0),
        ("", ["Denver Broncos"], 0.0, 0.0),
    ],
)
def test_exact_match_and_f1_take_the_best_gold(prediction, golds, em, f1_score):
    assert exact_match(prediction, golds) == em
    assert f1(prediction, golds) == pytest.approx(f1_score)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Denver Broncos [1].", "Denver Broncos."),
        ("Paris [1, 2][3]", "Paris"),
        ("In 1998 [2,3], it rained [10]", "In 1998, it rained"),
        ("the list [a] stays", "the list [a] stays"),
    ],
)
def test_strip_citations(answer, expected):
    assert strip_citations(answer) == expected


def test_percentile_interpolates_between_ranks():
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(list(map(float, range(1, 101))), 95) == pytest.approx(95.05)
    assert summary([]) is None
    assert summary([10.0]) == {"p50": 10.0, "p95": 10.0}


@pytest.mark.parametrize(
    ("top_k", "expected"), [(10, [1, 5, 10]), (3, [1, 3]), (20, [1, 5, 10, 20])]
)
def test_cutoffs(top_k, expected):
    assert cutoffs(top_k) == expected


def test_score_rankings_averages_over_queries_and_failed_ones_score_zero():
    rankings = [["g1", "x"], ["x", "x2", "g2"], []]
    judgements = [{"g1": 1}, {"g2": 1}, {"g3": 1}]
    scores = score_rankings(rankings, judgements, top_k=10)
    assert scores["recall@1"] == round(1 / 3, 4)
    assert scores["recall@5"] == scores["recall@10"] == round(2 / 3, 4)
    assert scores["mrr"] == round((1 + 1 / 3) / 3, 4)
    assert scores["ndcg@10"] == round((1 + 1 / math.log2(4)) / 3, 4)
    with pytest.raises(ValueError):
        score_rankings(rankings, judgements[:2], top_k=10)
