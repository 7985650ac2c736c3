import pytest
from prometheus_client import REGISTRY

from ragbus.ratelimit import RateLimiter, retry_after
from ragbus.settings import HttpSettings
from tests.fakes import FakeClock

from .test_auth import bearer, probe_app

pytestmark = pytest.mark.unit


def test_a_key_may_burst_then_waits_for_the_refill():
    clock = FakeClock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.admit("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.admit("k") == pytest.approx(0.5)
    clock.now += 0.25
    assert limiter.admit("k") == pytest.approx(0.25), "a refused request takes nothing"
    clock.now += 0.25
    assert limiter.admit("k") == 0.0
    assert limiter.admit("k") == pytest.approx(0.5)


def test_an_idle_key_refills_up_to_its_burst_only():
    clock = FakeClock()
    limiter = RateLimiter(rate=10.0, burst=2, clock=clock)
    limiter.admit("k")
    clock.now += 3600
    assert [limiter.admit("k") for _ in range(3)][-1] == pytest.approx(0.1)


def test_keys_have_separate_buckets():
    clock = FakeClock()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock)
    assert limiter.admit("a") == 0.0
    assert limiter.admit("a") > 0
    assert limiter.admit("b") == 0.0


def test_a_zero_rate_admits_everything():
    limiter = RateLimiter(rate=0.0, burst=1, clock=FakeClock())
    assert not limiter.enabled
    assert all(limiter.admit("k") == 0.0 for _ in range(10_000))


def test_the_defaults_leave_bulk_ingest_and_steady_use_alone():
    settings = HttpSettings()
    clock = FakeClock()
    limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst, clock)
    # `ragbus ingest` of 5,000 files: 200 requests of 25 files, back to back in no time at all.
    assert all(limiter.admit("k") == 0.0 for _ in range(200))
    clock.now += 10
    # Then a client asking 50 questions a second for ten minutes.
    for _ in range(30_000):
        clock.now += 0.02
        assert limiter.admit("k") == 0.0


@pytest.mark.parametrize(("rate", "burst"), [(-1.0, 1), (1.0, 0)])
def test_a_meaningless_limit_is_refused(rate, burst):
    with pytest.raises(ValueError):
        RateLimiter(rate=rate, burst=burst)


@pytest.mark.parametrize(("wait", "header"), [(0.001, "1"), (1.0, "1"), (1.2, "2"), (59.5, "60")])
def test_retry_after_is_whole_seconds_never_zero(wait, header):
    assert retry_after(wait) == header


def refused_count() -> float:
    labels = {"service": "probe"}
    return REGISTRY.get_sample_value("ragbus_rate_limited_total", labels) or 0.0


async def test_the_request_after_the_burst_gets_429_for_that_key_only():
    keys = "key-a:acme,key-b:beta"
    async with probe_app(api_keys=keys, rate_limit_per_s=0.001, rate_limit_burst=3) as client:
        before = refused_count()
        answers = [await client.get("/v1/whoami", headers=bearer("key-a")) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        limited = answers[-1]
        assert int(limited.headers["Retry-After"]) >= 1
        assert "0.001 requests/s per API key (burst 3)" in limited.json()["detail"]
        assert refused_count() == before + 1
        exported = (await client.get("/metrics")).text
        assert "ragbus_rate_limited_total" in exported
        assert "acme" not in exported and "beta" not in exported, "tenant names on /metrics"

        other = await client.get("/v1/whoami", headers=bearer("key-b"))
        assert (other.status_code, other.json()) == (200, {"tenant": "beta"})
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/v1/whoami")).status_code == 401, "no key: 401 before any limit"


async def test_without_keys_nothing_is_limited():
    async with probe_app(rate_limit_per_s=0.001, rate_limit_burst=1) as client:
        answers = [await client.get("/v1/whoami") for _ in range(5)]
        assert {a.status_code for a in answers} == {200}
