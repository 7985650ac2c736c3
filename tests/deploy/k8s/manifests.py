"""Render deploy/k8s without the kustomize binary, and validate what comes out.

Rendering covers the part of Kustomize the kustomization.yaml files use: `resources` (YAML
files, or folders with a kustomization.yaml of their own), `namespace`, and `patches` of JSON
6902 operations (add, replace, remove) with a `target` by kind and/or name. A kustomization
that uses anything else is refused rather than half rendered. (`kubectl kustomize` gives the
same objects where kubectl is at hand.)

Validation, per object:
- built-in kinds against the JSON schemas of Kubernetes K8S_VERSION that the PyPI package
  kubernetes-validate ships, strict: an unknown field is an error, as kubectl's default
  server-side field validation makes it;
- ScaledObject and TriggerAuthentication against the openAPIV3Schema of KEDA's CRDs, KafkaTopic
  and KafkaUser against Strimzi's (the fixtures/ files, each naming its source and version),
  made strict the same way;
- then what the schemas leave out: names must be DNS names, and every container image must be
  pinned to a tag other than `latest` (the schemas do not even require an image).
"""

import copy
import functools
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

Manifest = dict[str, Any]

K8S_VERSION = "1.30"
FIXTURES = Path(__file__).parent / "fixtures"
CRD_FILES = {
    ("keda.sh", "ScaledObject"): FIXTURES / "keda.sh_scaledobjects.yaml",
    ("keda.sh", "TriggerAuthentication"): FIXTURES / "keda.sh_triggerauthentications.yaml",
    ("kafka.strimzi.io", "KafkaTopic"): FIXTURES / "strimzi-kafkatopic-crd.yaml",
    ("kafka.strimzi.io", "KafkaUser"): FIXTURES / "strimzi-kafkauser-crd.yaml",
}
CLUSTER_SCOPED = frozenset({"Namespace", "PersistentVolume", "StorageClass", "ClusterRole"})
POD_OWNERS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job"})
_KUSTOMIZATION_KEYS = frozenset({"apiVersion", "kind", "resources", "namespace", "patches"})
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")


# --------------------------------------------------------------------------- rendering


def render(folder: Path) -> list[Manifest]:
    """The objects `kustomize build folder` would print (in file order)."""
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unsupported = set(spec) - _KUSTOMIZATION_KEYS
    if unsupported:
        raise ValueError(f"{folder}: kustomization fields not rendered here: {unsupported}")
    objects: list[Manifest] = []
    for entry in spec.get("resources", []):
        path = folder / entry
        if path.is_dir():
            objects += render(path)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for patch in spec.get("patches", []):
        targets = [obj for obj in objects if _matches(obj, patch["target"])]
        if not targets:
            raise ValueError(f"{folder}: a patch matches nothing: {patch['target']}")
        for obj in targets:
            for operation in yaml.safe_load(patch["patch"]):
                _apply(obj, operation)
    namespace = spec.get("namespace")
    for obj in objects if namespace else []:
        if obj["kind"] == "Namespace":
            obj["metadata"]["name"] = namespace
        elif obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = namespace
    ids = [(o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")) for o in objects]
    duplicated = {i for i in ids if ids.count(i) > 1}
    if duplicated:
        raise ValueError(f"{folder}: objects defined twice: {duplicated}")
    return objects


def _matches(obj: Manifest, target: dict[str, str]) -> bool:
    return all(
        (obj["kind"] if key == "kind" else obj["metadata"].get(key)) == value
        for key, value in target.items()
    )


def _apply(doc: Manifest, operation: dict[str, Any]) -> None:
    """One JSON 6902 operation; replace and remove need the target to exist, as in RFC 6902."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in operation["path"].split("/")[1:]]
    parent: Any = doc
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    op, last = operation["op"], parts[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if op == "add":
            parent.insert(index, operation["value"])
        elif op == "replace":
            parent[index] = operation["value"]
        elif op == "remove":
            del parent[index]
        else:
            raise ValueError(f"unsupported JSON patch operation {op!r}")
    elif op == "add" or (op == "replace" and last in parent):
        parent[last] = operation["value"]
    elif op == "remove":
        del parent[last]
    else:
        raise ValueError(f"cannot {op} {operation['path']}: absent or unsupported")


# --------------------------------------------------------------------------- validation


def problems(obj: Manifest) -> list[str]:
    """Everything wrong with one object; empty when it would be accepted and is pinned."""
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    crd = CRD_FILES.get((group, obj.get("kind", "")))
    found = _crd_errors(crd, version, obj) if crd else _kubernetes_errors(obj)
    return found + _name_errors(obj) + _image_errors(obj)


def _kubernetes_errors(obj: Manifest) -> list[str]:
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{_where(error)}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [error.message]
    return []


def _crd_errors(crd: Path, version: str, obj: Manifest) -> list[str]:
    validator = jsonschema.Draft7Validator(_crd_schema(crd, version))
    return [f"{_where(e)}: {e.message}" for e in validator.iter_errors(obj)]


@functools.cache
def _crd_schema(crd: Path, version: str) -> dict[str, Any]:
    definition = yaml.safe_load(crd.read_text())
    (entry,) = [v for v in definition["spec"]["versions"] if v["name"] == version]
    return _strict(entry["schema"]["openAPIV3Schema"])


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields refused wherever it lists the known ones (the API server
    prunes them, and kubectl's default strict field validation turns that into an error)."""
    out = copy.copy(schema)
    if "properties" in out:
        out["properties"] = {name: _strict(sub) for name, sub in out["properties"].items()}
        if "additionalProperties" not in out and not out.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = _strict(out[key])
    return out


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "(root)"


def _name_errors(obj: Manifest) -> list[str]:
    name = str(obj.get("metadata", {}).get("name", ""))
    pattern = _DNS_LABEL if obj.get("kind") == "Service" else _DNS_SUBDOMAIN
    return [] if pattern.fullmatch(name) else [f"metadata.name {name!r} is not a DNS name"]


def _image_errors(obj: Manifest) -> list[str]:
    errors = []
    for container in containers(obj):
        image = str(container.get("image", ""))
        tag = image.rpartition("/")[2].partition(":")[2]
        if "@sha256:" not in image and tag in ("", "latest"):
            errors.append(f"container {container.get('name')}: image {image!r} is not pinned")
    return errors


def containers(obj: Manifest) -> list[dict[str, Any]]:
    """The containers of a workload's pod template (none for other kinds)."""
    if obj.get("kind") not in POD_OWNERS:
        return []
    pod = pod_spec(obj)
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def pod_spec(obj: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec
