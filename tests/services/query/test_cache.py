import pytest
from prometheus_client import REGISTRY

from services.query.cache import AnswerCache, normalise_question
from tests.fakes import FakeClock

pytestmark = pytest.mark.unit


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("ragbus_query_cache_total", {"outcome": outcome}) or 0.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("What is Kafka?", "what is kafka"),
        ("  what   is\tKafka \n", "what is kafka"),
        ('"What is Kafka?"', "what is kafka"),
        ("«¿Qué es Kafka?»", "qué es kafka"),
        # "WHAT is Kafka?" in fullwidth letters, spaces and mark (NFKC folds them)
        (
            "\uff37\uff28\uff21\uff34\u3000\uff49\uff53\u3000\uff2b\uff41\uff46\uff4b\uff41\uff1f",
            "what is kafka",
        ),
        ("Straße", "strasse"),  # casefold, not lower
        ("Is C++ fast?", "is c++ fast"),  # symbols are not punctuation
        ("what's the k8s.io default?", "what's the k8s.io default"),  # inner marks stay
        ("...", ""),
    ],
)
def test_normalise_question(text, expected):
    assert normalise_question(text) == expected


BASE = {
    "tenant_id": "acme",
    "question": "What is Kafka?",
    "filters": {"team": "infra", "year": 2024},
    "generation": 3,
    "mode": "hybrid",
    "top_k": 5,
    "rerank": None,
    "generate": True,
    "model": "qwen",
}


def key_of(cache: AnswerCache[str], **overrides: object) -> str:
    fields = {**BASE, **overrides}
    return cache.key(
        fields.pop("tenant_id"),
        fields.pop("question"),
        fields.pop("filters"),
        fields.pop("generation"),
        **fields,
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"question": "what is kafka"},
        {"question": "  WHAT is   Kafka ? "},
        {"filters": {"year": 2024, "team": "infra"}},  # key order does not matter
    ],
)
def test_keys_are_stable_across_equivalent_requests(overrides):
    cache: AnswerCache[str] = AnswerCache(8, 60)
    assert key_of(cache, **overrides) == key_of(cache)
    assert len(key_of(cache)) == 64


@pytest.mark.parametrize(
    "overrides",
    [
        {"tenant_id": "other"},
        {"question": "What is Kafka Streams?"},
        {"filters": {}},
        {"filters": {"team": "infra", "year": 2025}},
        {"filters": {"team": "infra", "year": "2024"}},
        {"generation": 4},
        {"mode": "dense"},
        {"top_k": 6},
        {"rerank": True},
        {"generate": False},
        {"model": "llama"},
    ],
)
def test_keys_differ_in_every_part_of_the_request(overrides):
    cache: AnswerCache[str] = AnswerCache(8, 60)
    assert key_of(cache, **overrides) != key_of(cache)


def test_get_returns_what_was_put_and_counts_hits_and_misses():
    cache: AnswerCache[str] = AnswerCache(8, 60)
    hits, misses = counted("hit"), counted("miss")
    assert cache.get("k") is None
    cache.put("k", "answer")
    assert cache.get("k") == "answer"
    assert (counted("hit") - hits, counted("miss") - misses) == (1, 1)


def test_the_least_recently_used_answer_is_evicted_first():
    cache: AnswerCache[str] = AnswerCache(2, 60)
    cache.put("a", "A")
    cache.put("b", "B")
    assert cache.get("a") == "A"  # now "b" is the least recently used
    cache.put("c", "C")
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == ("A", None, "C")
    assert len(cache) == 2


def test_answers_expire_after_the_ttl(clock):
    cache: AnswerCache[str] = AnswerCache(8, ttl_s=60, clock=clock)
    cache.put("k", "answer")
    clock.now += 59.9
    assert cache.get("k") == "answer"
    clock.now += 0.1
    assert cache.get("k") is None
    assert len(cache) == 0


def test_storing_again_renews_the_ttl(clock):
    cache: AnswerCache[str] = AnswerCache(8, ttl_s=60, clock=clock)
    cache.put("k", "old")
    clock.now += 50
    cache.put("k", "new")
    clock.now += 50
    assert cache.get("k") == "new"


def test_clear_drops_everything_and_retires_the_keys_made_before_it():
    cache: AnswerCache[str] = AnswerCache(8, 60)
    before = key_of(cache)
    cache.put(before, "answer")
    cache.put("other", "answer")
    dropped = REGISTRY.get_sample_value("ragbus_query_cache_dropped_total") or 0.0
    assert cache.clear() == 2
    assert REGISTRY.get_sample_value("ragbus_query_cache_dropped_total") == dropped + 2
    # An answer computed before the clear and stored after it is never served.
    cache.put(before, "stale")
    assert key_of(cache) != before
    assert cache.get(key_of(cache)) is None
    assert cache.clear() == 1


def test_zero_entries_disables_the_cache():
    cache: AnswerCache[str] = AnswerCache(0, 60)
    cache.put("k", "answer")
    assert cache.get("k") is None
    assert len(cache) == 0


@pytest.mark.parametrize(("entries", "ttl"), [(-1, 60), (8, 0)])
def test_invalid_bounds_are_refused(entries, ttl):
    with pytest.raises(ValueError, match="max_entries"):
        AnswerCache(entries, ttl)
