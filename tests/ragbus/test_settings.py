import pytest
from pydantic import ValidationError

from ragbus.settings import HttpSettings
from services.ingest.settings import IngestSettings
from services.query.settings import QuerySettings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "ragbus.example.com"])
@pytest.mark.parametrize("settings_class", [HttpSettings, IngestSettings, QuerySettings])
def test_without_keys_only_loopback_may_be_bound(settings_class, host):
    with pytest.raises(ValidationError) as caught:
        settings_class(host=host)
    message = str(caught.value)
    assert f"refusing to bind {host}: no API keys are configured" in message
    assert "RAGBUS_API_KEYS" in message


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_needs_no_keys(host):
    assert HttpSettings(host=host).tenant_keys == {}


def test_with_keys_any_address_may_be_bound(monkeypatch):
    monkeypatch.setenv("RAGBUS_HOST", "0.0.0.0")
    monkeypatch.setenv("RAGBUS_API_KEYS", " key-a:acme, key-b:beta ,key-c:acme,")
    settings = QuerySettings()
    assert settings.host == "0.0.0.0"
    assert settings.tenant_keys == {"key-a": "acme", "key-b": "beta", "key-c": "acme"}


@pytest.mark.parametrize("entry", ["s3cr3t-justakey", ":acme", "s3cr3t-key:"])
def test_a_key_without_a_tenant_is_refused_without_showing_the_key(entry):
    with pytest.raises(ValidationError, match="entry 2 is not key:tenant") as refused:
        HttpSettings(api_keys=f"good-key:beta,{entry}")
    assert "s3cr3t" not in str(refused.value)


@pytest.mark.parametrize(("field", "value"), [("rate_limit_per_s", -1.0), ("rate_limit_burst", 0)])
def test_a_meaningless_rate_limit_is_refused(field, value):
    with pytest.raises(ValidationError):
        HttpSettings(**{field: value})


def test_a_zero_rate_turns_limiting_off():
    assert HttpSettings(rate_limit_per_s=0).rate_limit_per_s == 0
