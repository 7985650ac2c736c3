"""deploy/k8s, rendered without the kustomize binary (manifests.py), checked offline: every object
against the Kubernetes, KEDA and Strimzi schemas, and the whole against the code it deploys:
topics, consumer groups, settings, ports, and who may do what on the bus."""

import copy
import importlib
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest
from faststream.kafka import KafkaBroker

from contracts.events import Stage
from contracts.topics import all_topics, tenant_topic
from deploy.kafka.access import (
    ADMIN,
    SERVICE_RULES,
    Rule,
    service_principal,
    tenant_principal,
    tenant_rules,
)
from ragbus.bus import Bus
from services.registry import SERVICES
from tests.deploy.k8s.manifests import Manifest, containers, pod_spec, problems, render
from tests.deploy.service_settings import env_names, load_settings, settings_class

pytestmark = pytest.mark.unit

K8S = Path(__file__).resolve().parents[3] / "deploy" / "k8s"
LAYOUTS = [K8S / "base", *sorted(p.parent for p in K8S.glob("overlays/*/kustomization.yaml"))]
STAGES: tuple[Stage, ...] = ("chunker", "embedder", "indexer")
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
EXAMPLE_TENANT = "example"  # tenant-example.yaml


@pytest.fixture(scope="module", params=LAYOUTS, ids=lambda p: p.name)
def objects(request: pytest.FixtureRequest) -> list[Manifest]:
    rendered: list[Manifest] = render(request.param)
    return rendered


@pytest.fixture(scope="module")
def base() -> list[Manifest]:
    return render(K8S / "base")


def of_kind(objects: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def the(objects: list[Manifest], kind: str, name: str) -> Manifest:
    return of_kind(objects, kind)[name]


def test_overlays_exist():
    assert {p.name for p in LAYOUTS} >= {"base", "single-broker", "gpu"}


def test_every_manifest_validates(objects):
    found = {
        f"{obj['kind']}/{obj['metadata']['name']}": errors
        for obj in objects
        if (errors := problems(obj))
    }
    assert found == {}


def _locate(obj: Manifest, path: str) -> tuple[Any, str]:
    """The node holding the last part of a dotted path (numbers index lists), and that part."""
    *parents, last = path.split(".")
    node: Any = obj
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    return node, last


def _set(path: str, value: Any) -> Callable[[Manifest], None]:
    def mutate(obj: Manifest) -> None:
        node, last = _locate(obj, path)
        node[last] = value

    return mutate


def _drop(path: str) -> Callable[[Manifest], None]:
    def mutate(obj: Manifest) -> None:
        node, last = _locate(obj, path)
        del node[last]

    return mutate


CONTAINER = "spec.template.spec.containers.0"
ACL = "spec.authorization.acls.0"


@pytest.mark.parametrize(
    ("kind", "name", "mutate", "expected"),
    [
        # KEDA: trigger metadata is a map of strings.
        ("ScaledObject", "embedder", _set("spec.triggers.0.metadata.lagThreshold", 22), "string"),
        ("ScaledObject", "embedder", _set("spec.minReplicaCount", "1"), "integer"),
        ("ScaledObject", "indexer", _drop("spec.scaleTargetRef.name"), "'name' is a required"),
        ("ScaledObject", "chunker", _set("spec.maxReplicas", 12), "Additional properties"),
        # Kubernetes: the schema and strict field validation.
        ("Deployment", "ingest", _set(f"{CONTAINER}.ports.0.containerPort", "8081"), "integer"),
        ("Deployment", "query", _set("spec.replica", 2), "Additional properties"),
        ("Deployment", "status", _drop(f"{CONTAINER}.name"), "'name' is a required"),
        ("Service", "qdrant", _set("spec.ports.0.port", "http"), "integer"),
        # What the schema allows and the checks on top refuse.
        ("Deployment", "chunker", _drop(f"{CONTAINER}.image"), "is not pinned"),
        ("Deployment", "embedder", _set(f"{CONTAINER}.image", "ragbus:latest"), "is not pinned"),
        ("Service", "query", _set("metadata.name", "Query_Service"), "not a DNS name"),
        # Strimzi.
        ("KafkaTopic", "chunks-ready", _set("spec.partitions", "12"), "integer"),
        ("KafkaTopic", "chunks-ready", _set("spec.partition", 12), "Additional properties"),
        ("KafkaUser", "ragbus-query", _set(f"{ACL}.operations", ["READ"]), "is not one of"),
        ("KafkaUser", "ragbus-query", _set(f"{ACL}.resource.patternType", "prefixed"), "one of"),
        ("KafkaUser", "ragbus-query", _set("spec.authentication", {}), "'type' is a required"),
        # KEDA's authentication.
        ("TriggerAuthentication", "ragbus-kafka", _drop("spec.env.0.name"), "'name' is a required"),
    ],
)
def test_the_validation_catches_a_broken_manifest(base, kind, name, mutate, expected):
    obj = copy.deepcopy(the(base, kind, name))
    assert problems(obj) == []
    mutate(obj)
    assert any(expected in problem for problem in problems(obj)), problems(obj)


def test_the_topics_are_the_contracts_topics(objects):
    topics = {t["spec"]["topicName"]: t["spec"] for t in of_kind(objects, "KafkaTopic").values()}
    expected = [*all_topics(), tenant_topic(EXAMPLE_TENANT)]
    assert set(topics) == {spec.name for spec in expected}
    for spec in expected:
        assert topics[spec.name]["partitions"] == spec.partitions
        declared = topics[spec.name]["config"]
        # Replication settings are the cluster's business; everything else is the contract's.
        assert {k: v for k, v in declared.items() if k != "min.insync.replicas"} == spec.configs
        assert int(declared["min.insync.replicas"]) <= topics[spec.name]["replicas"]


@pytest.fixture(scope="module")
def subscriptions() -> dict[str, tuple[str, str]]:
    """Stage → (consumer group, topic) as each stage's own subscriber declares them, registered
    on a bare broker (the tokenizer, model and store are not touched until a message comes)."""
    found: dict[str, tuple[str, str]] = {}
    for stage in STAGES:
        module = importlib.import_module(f"services.{stage}.subscriber")
        broker = KafkaBroker()
        stand_in = SimpleNamespace(store=None)
        module.register(broker, Bus(broker, stage), settings_class(stage)(), stand_in)
        subscriber: Any
        # The grouped one (the chunker also follows index.generations, in every replica).
        (subscriber,) = [each for each in broker.subscribers if each.group_id]
        (topic,) = subscriber.topic_names
        found[stage] = (subscriber.group_id, topic)
    return found


def test_each_stage_scales_on_its_own_group_and_topic(objects, subscriptions):
    bootstrap = the(objects, "ConfigMap", "ragbus-config")["data"]["RAGBUS_KAFKA_BOOTSTRAP"]
    partitions = {
        t["spec"]["topicName"]: t["spec"]["partitions"]
        for t in of_kind(objects, "KafkaTopic").values()
    }
    scaled = of_kind(objects, "ScaledObject")
    for stage, (group, topic) in subscriptions.items():
        spec = scaled[stage]["spec"]
        assert spec["scaleTargetRef"]["name"] == stage
        (trigger,) = spec["triggers"]
        metadata = trigger["metadata"]
        assert trigger["type"] == "kafka"
        assert (metadata["consumerGroup"], metadata["topic"]) == (group, topic)
        assert metadata["bootstrapServers"] == bootstrap
        # A replica beyond the partition count would sit idle.
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions[topic]


def test_scaled_workloads_leave_their_replicas_to_keda(objects):
    deployments = of_kind(objects, "Deployment")
    for scaled in of_kind(objects, "ScaledObject").values():
        target = deployments[scaled["spec"]["scaleTargetRef"]["name"]]
        assert "replicas" not in target["spec"], "kubectl apply would reset KEDA's count"


def ragbus_containers(objects: list[Manifest]) -> dict[str, dict[str, Any]]:
    """Service name → its container, for every container running `ragbus serve`."""
    found = {}
    for obj in objects:
        for container in containers(obj):
            if container.get("command") == ["ragbus"]:
                serve, service = container["args"]
                assert serve == "serve"
                assert service not in found, f"{service} runs twice"
                found[service] = container
    return found


def container_env(objects: list[Manifest], container: dict[str, Any]) -> dict[str, str]:
    """The environment the container gets; a Secret's value is a stand-in key."""
    env = {}
    for source in container.get("envFrom", []):
        env.update(the(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", "k-test:acme")
    return env


def test_every_service_runs_once_with_settings_it_reads(objects, monkeypatch):
    running = ragbus_containers(objects)
    assert sorted(running) == sorted(SERVICES)
    for service, container in running.items():
        env = container_env(objects, container)
        assert set(env) <= env_names(settings_class(service)), service
        settings = load_settings(service, env, monkeypatch)  # raises what the pod would
        ports = [port["containerPort"] for port in container["ports"]]
        assert ports == [settings.model_dump()["port"]], service


def test_the_api_keys_come_from_a_secret(objects):
    for container in ragbus_containers(objects).values():
        (keys,) = [item for item in container["env"] if item["name"] == "RAGBUS_API_KEYS"]
        assert keys["valueFrom"]["secretKeyRef"]["name"] == "ragbus-api-keys"
    assert of_kind(objects, "Secret") == {}


def test_ingest_and_chunker_share_the_blob_volume(objects):
    """Events carry file:// URIs that ingest wrote and the chunker reads, on any node."""
    blobs = f"{the(objects, 'ConfigMap', 'ragbus-config')['data']['RAGBUS_DATA_DIR']}/blobs"
    claims = set()
    for name in ("ingest", "chunker"):
        deployment = the(objects, "Deployment", name)
        (container,) = containers(deployment)
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == blobs]
        (volume,) = [v for v in pod_spec(deployment)["volumes"] if v["name"] == mount["name"]]
        claims.add(volume["persistentVolumeClaim"]["claimName"])
    (claim,) = claims
    assert the(objects, "PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteMany"]


def test_every_workload_is_probed_sized_and_covered_by_a_disruption_budget(objects):
    budgets = [
        pdb["spec"]["selector"]["matchLabels"]
        for pdb in of_kind(objects, "PodDisruptionBudget").values()
    ]
    for deployment in of_kind(objects, "Deployment").values():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(selector.items() <= labels.items() for selector in budgets)
        # Kubernetes adds FOO_PORT=tcp://… for every Service unless told not to; a Service
        # named like a setting would break it (and vLLM reads VLLM_PORT).
        assert pod_spec(deployment)["enableServiceLinks"] is False
        for container in containers(deployment):
            assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(container)
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert "memory" in container["resources"]["limits"]
            if container.get("command") == ["ragbus"]:
                assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"


def settings_in_config_maps(objects: list[Manifest]) -> dict[str, str]:
    """Every setting the ConfigMaps hold (one per settings group, no name in two)."""
    config: dict[str, str] = {}
    for config_map in of_kind(objects, "ConfigMap").values():
        data = config_map.get("data", {})
        assert not set(data) & set(config), config_map["metadata"]["name"]
        config.update(data)
    return config


def test_urls_in_the_config_name_services_of_the_layout(objects):
    config = settings_in_config_maps(objects)
    services = of_kind(objects, "Service")
    for name in ("QDRANT_URL", "TEI_URL", "LLM_URL"):
        if name in config:
            url = urlsplit(config[name])
            assert url.hostname in services, name
            ports = [p["port"] for p in services[url.hostname]["spec"]["ports"]]
            assert (url.port or 80) in ports, name
    clusters = {
        t["metadata"]["labels"]["strimzi.io/cluster"]
        for t in of_kind(objects, "KafkaTopic").values()
    }
    assert [f"{c}-kafka-bootstrap:9092" for c in clusters] == [config["RAGBUS_KAFKA_BOOTSTRAP"]]


def test_gpu_servers_run_on_gpu_nodes_and_serve_the_configured_model():
    objects = render(K8S / "overlays" / "gpu")
    config = settings_in_config_maps(objects)
    for name in ("tei", "vllm"):
        pod = pod_spec(the(objects, "Deployment", name))
        (container,) = pod["containers"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert GPU_TOLERATION in pod["tolerations"]
        assert pod["nodeSelector"]
        assert the(objects, "ScaledObject", name)["spec"]["minReplicaCount"] >= 1
    (vllm,) = pod_spec(the(objects, "Deployment", "vllm"))["containers"]
    assert f"--served-model-name={config['LLM_MODEL']}" in vllm["args"]
    assert config["LLM_URL"].endswith("/v1")


Acl = tuple[str, str, str, str]


def acls(user: Manifest) -> set[Acl]:
    """A KafkaUser's ACLs, one (resource type, name, pattern type, operation) per operation."""
    found: set[Acl] = set()
    for acl in user["spec"]["authorization"]["acls"]:
        # Neither `type: deny` nor a `host`: every ACL of access.py allows, from any host.
        assert set(acl) == {"resource", "operations"}, acl
        resource = acl["resource"]
        pattern = resource.get("patternType", "literal")
        found |= {(resource["type"], resource["name"], pattern, op) for op in acl["operations"]}
    return found


def granted(rules: Iterable[Rule]) -> set[Acl]:
    """The same for rules of deploy/kafka/access.py, in Strimzi's spelling."""
    return {
        (rule.resource, rule.name, "prefix" if rule.prefixed else "literal", op.capitalize())
        for rule in rules
        for op in rule.operations
    }


def allows(rules: Iterable[Rule], resource: str, name: str, operation: str) -> bool:
    """Whether `rules` allow `operation` on a resource (READ and WRITE imply DESCRIBE)."""
    implied = {"READ", "WRITE", "DESCRIBE"} if operation == "DESCRIBE" else {operation}
    return any(
        rule.resource == resource
        and (name.startswith(rule.name) if rule.prefixed else name == rule.name)
        and implied & set(rule.operations)
        for rule in rules
    )


def test_each_principal_has_exactly_the_acls_of_deploy_kafka_access(objects):
    users = of_kind(objects, "KafkaUser")
    # Each service runs in a Deployment of its own: no principal of services served together.
    principals = {service_principal(service) for service in SERVICE_RULES}
    assert set(users) == principals | {ADMIN, tenant_principal(EXAMPLE_TENANT)}
    for user in users.values():
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
    for service, rules in SERVICE_RULES.items():
        user = users[service_principal(service)]
        assert user["spec"]["authorization"]["type"] == "simple"
        assert acls(user) == granted(rules), service
    # A super user through the cluster's superUsers: no ACLs to keep in step.
    assert "authorization" not in users[ADMIN]["spec"]


def test_the_example_tenant_may_only_write_its_own_upload_topic(objects):
    assert acls(the(objects, "KafkaUser", tenant_principal(EXAMPLE_TENANT))) == granted(
        tenant_rules(EXAMPLE_TENANT)
    )


def test_every_service_signs_in_as_its_own_principal(objects):
    users = of_kind(objects, "KafkaUser")
    for service, container in ragbus_containers(objects).items():
        env = {item["name"]: item for item in container["env"]}
        principal = service_principal(service)
        assert env["RAGBUS_KAFKA_USERNAME"]["value"] == principal
        # The Secret Strimzi's User Operator keeps for the KafkaUser.
        secret = env["RAGBUS_KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert secret == {"name": principal, "key": "password"}
        assert principal in users


def test_keda_reads_the_lag_signed_in_as_the_stage(objects):
    principals = {service_principal(name): rules for name, rules in SERVICE_RULES.items()}
    deployments = of_kind(objects, "Deployment")
    authentications = of_kind(objects, "TriggerAuthentication")
    for scaled in of_kind(objects, "ScaledObject").values():
        for trigger in scaled["spec"]["triggers"]:
            if trigger["type"] != "kafka":
                continue
            metadata = trigger["metadata"]
            assert metadata["sasl"] == "scram_sha512"
            authentication = authentications[trigger["authenticationRef"]["name"]]["spec"]
            params = {each["parameter"]: each for each in authentication["env"]}
            assert set(params) == {"username", "password"}
            # Without a containerName, KEDA reads the scaled Deployment's first container.
            assert not any("containerName" in each for each in params.values())
            target = deployments[scaled["spec"]["scaleTargetRef"]["name"]]
            env = {item["name"]: item for item in pod_spec(target)["containers"][0]["env"]}
            principal = env[params["username"]["name"]]["value"]
            assert env[params["password"]["name"]]["valueFrom"]["secretKeyRef"]["name"] == principal
            # KEDA fetches the group's committed offsets and the topic's end offsets.
            rules = principals[principal]
            assert allows(rules, "group", metadata["consumerGroup"], "DESCRIBE")
            assert allows(rules, "topic", metadata["topic"], "DESCRIBE")
