"""Where `ragbus up` tells the services to generate (nothing is started here)."""

import pytest

from ragbus_ops.llm_server import MODEL_ALIAS
from ragbus_ops.supervisor import Stack, StackSettings

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def no_llm_environment(monkeypatch):
    for name in ("LLM_URL", "RAGBUS_LLM_URL", "LLM_MODEL", "RAGBUS_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)


def test_by_default_the_packaged_model_serves_the_stack(tmp_path):
    stack = Stack(StackSettings(data_dir=tmp_path))
    assert stack.llm_server is not None
    assert stack.env()["LLM_URL"] == stack.llm_server.url
    assert stack.env()["LLM_MODEL"] == MODEL_ALIAS


def test_a_configured_endpoint_is_passed_through_and_nothing_is_started(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_URL", "http://vllm:8000/v1")
    monkeypatch.setenv("LLM_MODEL", "qwen-7b")
    stack = Stack(StackSettings(data_dir=tmp_path))
    assert stack.llm_server is None
    assert (stack.env()["LLM_URL"], stack.env()["LLM_MODEL"]) == ("http://vllm:8000/v1", "qwen-7b")


def test_without_generation_no_service_is_told_of_a_model(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_URL", "http://vllm:8000/v1")
    stack = Stack(StackSettings(data_dir=tmp_path), llm=False)
    assert stack.llm_server is None
    assert "LLM_URL" not in stack.env() and "LLM_MODEL" not in stack.env()
