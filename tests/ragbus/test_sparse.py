import pytest

from ragbus.sparse import K1, encode_document, encode_query, terms

pytestmark = pytest.mark.unit


def test_terms_drop_stop_words_and_stem_to_stable_indices():
    assert terms("The pods are running") == terms("pod running")
    assert terms("Running pods") == terms("run pod")
    assert terms("the of and") == []
    # Stable across processes: blake2b, not Python's salted hash.
    assert terms("kubernetes") == [terms("Kubernetes")[0]]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("the a an", 0),
        ("pods pods pods", 1),
        ("Deployments manage ReplicaSets", 3),
    ],
)
def test_document_vector_has_one_entry_per_distinct_term(text, expected):
    vector = encode_document(text)
    assert len(vector.indices) == expected == len(vector.values)
    assert list(vector.indices) == sorted(vector.indices)


def test_repeated_terms_saturate_below_k1_plus_one():
    once = encode_document("scheduler")
    many = encode_document("scheduler " * 50)
    assert 0 < once.values[0] < many.values[0] < K1 + 1


def test_longer_passages_weigh_a_term_less():
    short = encode_document("etcd stores cluster state")
    long = encode_document("etcd stores cluster state " + "filler words here " * 60)
    index = terms("etcd")[0]
    weight = dict(zip(short.indices, short.values, strict=True))[index]
    diluted = dict(zip(long.indices, long.values, strict=True))[index]
    assert diluted < weight


def test_query_weighs_each_distinct_term_once():
    vector = encode_query("What is a pod? A pod is a group of containers.")
    assert set(vector.values) == {1.0}
    assert len(vector.indices) == len(set(terms("pod group containers")))
    assert not encode_query("what is it")
