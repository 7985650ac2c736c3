"""docker-compose.yml, checked offline against the code it runs: setting names, ports, the blob
volume ingest and chunker share, references between services, pinned images."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.registry import SERVICES
from tests.deploy.service_settings import default_port, env_names, load_settings, settings_class

pytestmark = pytest.mark.unit

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}
_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE.read_text())["services"]
    return found


def interpolate(value: object, variables: dict[str, str]) -> str:
    """A value as compose substitutes it from the shell `variables` (an empty variable counts
    as unset, as with the `:-` and `:?` forms this file uses)."""

    def substitute(match: re.Match[str]) -> str:
        value, op, arg = variables.get(match["name"], ""), match["op"] or "", match["arg"]
        if op.endswith("?") and not value:
            raise LookupError(f"compose would stop: {arg}")
        return arg if op.endswith("-") and not value else value

    return _VARIABLE.sub(substitute, str(value))


def ragbus_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """ragbus service name → its compose service, for every `ragbus serve NAME`."""
    found = {}
    for service in services.values():
        command = service.get("command", [])
        if service.get("image", "").startswith("ragbus:") and command[:1] == ["serve"]:
            (name,) = command[1:]
            found[name] = service
    return found


def test_every_service_runs_once(services):
    assert sorted(ragbus_services(services)) == sorted(SERVICES)


def test_every_variable_is_a_setting_the_service_reads(services, monkeypatch):
    for name, service in ragbus_services(services).items():
        environment = service["environment"]
        assert set(environment) <= env_names(settings_class(name)), name
        env = {
            key: interpolate(value, {"RAGBUS_API_KEYS": "k-test:acme"})
            for key, value in environment.items()
        }
        load_settings(name, env, monkeypatch)  # raises what the container would stop with


def test_the_services_stop_without_api_keys(services):
    """They listen on 0.0.0.0 in their containers, which the settings allow only with keys."""
    ingest = ragbus_services(services)["ingest"]
    assert ingest["environment"]["RAGBUS_HOST"] == "0.0.0.0"
    with pytest.raises(LookupError):
        interpolate(ingest["environment"]["RAGBUS_API_KEYS"], {})


def test_ports_are_the_settings_defaults(services):
    for name, service in ragbus_services(services).items():
        port = default_port(name)
        assert service["ports"] == [f"127.0.0.1:{port}:{port}"], name


def test_ingest_and_chunker_share_the_blob_store(services):
    running = ragbus_services(services)
    mounts = {}
    for name in ("ingest", "chunker"):
        blobs = f"{running[name]['environment']['RAGBUS_DATA_DIR']}/blobs"
        (volume,) = [v.split(":")[0] for v in running[name]["volumes"] if v.split(":")[1] == blobs]
        mounts[name] = volume
    assert mounts["ingest"] == mounts["chunker"]


def test_dependencies_exist_and_start_in_the_same_profiles(services):
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
            # A dependency in a profile the service is not in would not be started.
            assert set(services[dependency].get("profiles", [])) <= set(service.get("profiles", []))
    running = ragbus_services(services)
    assert all(
        s["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        for s in running.values()
    )
    assert services["topics"]["command"][0] == "bootstrap"


def test_images_are_pinned(services):
    for name, service in services.items():
        tag = service["image"].rpartition("/")[2].partition(":")[2]
        assert tag not in ("", "latest"), name


def test_the_gpu_servers_are_in_the_gpu_profile_with_a_gpu_each(services):
    gpu = {name for name, service in services.items() if "gpu" in service.get("profiles", [])}
    assert gpu == {"tei-gpu", "vllm"}
    for name in gpu:
        (device,) = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert device["capabilities"] == ["gpu"]
    assert any(arg.startswith("--served-model-name=") for arg in services["vllm"]["command"])
