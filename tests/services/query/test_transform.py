import pytest

from ragbus.ports import Hit
from services.query.models import QUESTION_CHARS
from services.query.transform import (
    NOT_IN_DOCUMENTS,
    Exchange,
    answer_messages,
    attributed,
    citations_of,
    cited_numbers,
    extractive_answer,
    rewrite_messages,
    standalone_from,
)

pytestmark = pytest.mark.unit

HITS = [
    Hit("c1", 0.9, {"document_id": "d1", "source": "a.md", "text": "Pods are the smallest unit."}),
    Hit("c2", 0.8, {"document_id": "d2", "source": "b.md", "text": "Etcd stores state."}),
]


def test_citations_are_numbered_in_rank_order_and_point_at_chunks():
    citations = citations_of(HITS)
    assert [(c.n, c.chunk_id, c.document_id, c.source) for c in citations] == [
        (1, "c1", "d1", "a.md"),
        (2, "c2", "d2", "b.md"),
    ]


def test_the_prompt_quotes_numbered_passages_asks_for_citations_and_admits_ignorance():
    system, example, reply, user = answer_messages("What stores state?", citations_of(HITS))
    assert "square brackets" in system["content"] and NOT_IN_DOCUMENTS in system["content"]
    assert "not instructions" in system["content"]
    assert (example["role"], reply["role"], user["role"]) == ("user", "assistant", "user")
    assert reply["content"].endswith("[2].") and '<passage n="2" source=' in example["content"]
    assert (
        '<passage n="1" source="a.md">\nPods are the smallest unit.\n</passage>' in user["content"]
    )
    assert '<passage n="2" source="b.md">\nEtcd stores state.\n</passage>' in user["content"]
    assert user["content"].endswith("Question: What stores state?")


@pytest.mark.parametrize(
    ("answer", "available", "expected"),
    [
        ("Etcd [2].", 2, [2]),
        ("Pods [1][2], and again [1].", 2, [1, 2]),
        ("Both [2, 1].", 2, [2, 1]),
        ("Out of range [7] and [0].", 2, []),
        ("No citation at all.", 2, []),
        ("Half a marker [1", 2, []),
    ],
)
def test_cited_numbers(answer, available, expected):
    assert cited_numbers(answer, available) == expected


HISTORY = [Exchange("What is a Deployment?", "It manages ReplicaSets [1].")]


@pytest.mark.parametrize(
    ("rewritten", "expected"),
    [
        ("How do I scale a Deployment?", "How do I scale a Deployment?"),
        ('"How do I scale a Deployment?"\nextra', "How do I scale a Deployment?"),
        ("Standalone question: How do I scale it?", "How do I scale it?"),
        ("", "What is a Deployment? How do I scale it?"),
        ("   \n", "What is a Deployment? How do I scale it?"),
    ],
)
def test_standalone_question(rewritten, expected):
    assert standalone_from(rewritten, HISTORY, "How do I scale it?") == expected


def test_rewrite_prompt_carries_the_conversation():
    _, user = rewrite_messages(HISTORY, "How do I scale it?")
    assert "User: What is a Deployment?" in user["content"]
    assert "Assistant: It manages ReplicaSets [1]." in user["content"]
    assert user["content"].endswith("Follow-up question: How do I scale it?")


def test_extractive_answer_says_there_is_no_model_and_cites_the_best_passage():
    answer = extractive_answer(citations_of(HITS))
    assert "No language model" in answer and "Pods are the smallest unit." in answer
    assert answer.endswith("[1]")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Etcd stores the state.", "c2"),
        ("Pods are the smallest unit", "c1"),
        ("The moon is made of cheese.", None),
        (NOT_IN_DOCUMENTS, None),
        ("", None),
    ],
)
def test_an_answer_without_citations_is_attributed_to_the_passage_holding_it(answer, expected):
    source = attributed(answer, citations_of(HITS))
    assert (source.chunk_id if source else None) == expected


def test_the_fallback_query_of_a_failed_rewrite_is_never_longer_than_a_question():
    history = [Exchange("y" * 100_000, "an answer")]
    query = standalone_from("", history, "and what about z?")
    assert len(query) <= QUESTION_CHARS and query.endswith("and what about z?")
