"""What a rendered RayCluster or RayJob must satisfy, with or without KubeRay's CRDs at hand.

Two layers, each returning a list of ``"<path>: <what is wrong>"`` strings (empty: valid):

- :func:`builtin_errors`, always: ``ray.io_v1.schema.json`` next to this file (shipped in the package,
  written by us: only the fields :mod:`continuous_learning.compute.kuberay` renders, closed, with the
  API server's rules for names, labels and quantities) and the rules between fields that a schema
  cannot say (a volume mount names a volume, ``minReplicas <= replicas <= maxReplicas``, ...).
- :func:`crd_errors`, where KubeRay's CRDs are provided (``ray.io_rayclusters.yaml`` and
  ``ray.io_rayjobs.yaml`` as released in KubeRay's ``ray-operator/config/crd/bases/``): their
  ``openAPIV3Schema``, with unknown fields rejected as the API server would prune them.

No Airflow and no Kubernetes client here; ``jsonschema`` and (for the CRDs) ``PyYAML`` only.
"""

from __future__ import annotations

import functools
import json
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).parent / "ray.io_v1.schema.json"
API_VERSION = "ray.io/v1"
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
KINDS = tuple(CRD_FILES)

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])?$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_NATIVE_RESOURCES = {"cpu", "memory", "ephemeral-storage", "storage"}


def parse_quantity(value: Any) -> Decimal | None:
    """A Kubernetes quantity (``8``, ``"500m"``, ``"32Gi"``, ``"1e3"``) as a number; ``None`` if it is none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    match = _QUANTITY.match(str(value))
    if not match:
        return None
    number, suffix = match.group(1), match.group(2) or ""
    try:
        if suffix in _BINARY:
            return Decimal(number) * _BINARY[suffix]
        if suffix[:1] in ("e", "E"):
            return Decimal(number + suffix)
        return Decimal(number).scaleb(_DECIMAL[suffix])
    except (InvalidOperation, KeyError):
        return None


# ------------------------------------------------------------------------------------ built-in layer


@functools.lru_cache(maxsize=1)
def builtin_schema() -> dict[str, Any]:
    """The shipped schema document (``$defs`` holds ``RayCluster``, ``RayJob`` and their parts)."""
    return dict(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


@functools.lru_cache(maxsize=len(KINDS))
def _builtin_validator(kind: str) -> Any:
    import jsonschema

    document = builtin_schema()
    schema = {"$schema": document["$schema"], "$defs": document["$defs"], "$ref": f"#/$defs/{kind}"}
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _path(parts: Any) -> str:
    return ".".join(str(p) for p in parts) or "<root>"


def _schema_errors(validator: Any, manifest: dict[str, Any]) -> list[str]:
    from jsonschema.exceptions import best_match

    out = []
    for error in sorted(validator.iter_errors(manifest), key=lambda e: [str(p) for p in e.absolute_path]):
        if error.context:  # oneOf / anyOf: say what the closest branch wanted
            error = best_match(error.context) or error
        out.append(f"{_path(error.absolute_path)}: {error.message}")
    return out


def builtin_errors(manifest: dict[str, Any]) -> list[str]:
    """What is wrong with ``manifest`` by the shipped schema and the rules between fields."""
    kind = manifest.get("kind") if isinstance(manifest, dict) else None
    if kind not in KINDS:
        return [f"kind: {kind!r} is not one of {', '.join(KINDS)}"]
    errors = _schema_errors(_builtin_validator(str(kind)), manifest)
    if errors:  # the rules below read the fields the schema guarantees
        return errors
    spec = manifest["spec"]
    if kind == "RayCluster":
        return _cluster_rules(spec, "spec")
    return _job_rules(spec)


def _job_rules(spec: dict[str, Any]) -> list[str]:
    errors = []
    selector, own = bool(spec.get("clusterSelector")), "rayClusterSpec" in spec
    if selector == own:
        errors.append(
            "spec: give exactly one of clusterSelector (run on an existing cluster) and rayClusterSpec "
            "(the job's own cluster)"
        )
    if selector and spec.get("shutdownAfterJobFinishes"):
        errors.append("spec.shutdownAfterJobFinishes: only for the job's own cluster (rayClusterSpec)")
    if own:
        errors += _cluster_rules(spec["rayClusterSpec"], "spec.rayClusterSpec")
    if "runtimeEnvYAML" in spec:
        errors += _runtime_env_rules(spec["runtimeEnvYAML"])
    if "entrypointResources" in spec:
        try:
            resources = json.loads(spec["entrypointResources"])
        except ValueError as exc:
            resources, detail = None, str(exc)
        else:
            detail = "must be a JSON object of resource name to number"
        if not isinstance(resources, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in resources.values()
        ):
            errors.append(f"spec.entrypointResources: {detail}")
    return errors


def _runtime_env_rules(text: str) -> list[str]:
    import yaml

    try:
        runtime_env = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return [f"spec.runtimeEnvYAML: not YAML: {exc}"]
    if runtime_env is None:
        return []
    if not isinstance(runtime_env, dict):
        return ["spec.runtimeEnvYAML: must be a mapping (Ray's runtime_env)"]
    env_vars = runtime_env.get("env_vars", {})
    if not isinstance(env_vars, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env_vars.items()
    ):
        return ["spec.runtimeEnvYAML: env_vars must map names to strings"]
    return []


def _cluster_rules(spec: dict[str, Any], where: str) -> list[str]:
    errors = _pod_rules(spec["headGroupSpec"], f"{where}.headGroupSpec")
    seen: set[str] = set()
    for i, group in enumerate(spec.get("workerGroupSpecs", [])):
        at = f"{where}.workerGroupSpecs.{i}"
        if group["groupName"] in seen:
            errors.append(f"{at}.groupName: {group['groupName']!r} is used by another worker group")
        seen.add(group["groupName"])
        low, high = group["minReplicas"], group["maxReplicas"]
        if low > high:
            errors.append(f"{at}: minReplicas {low} > maxReplicas {high}")
        replicas = group.get("replicas")
        if replicas is not None and not low <= replicas <= high:
            errors.append(f"{at}.replicas: {replicas} is outside minReplicas..maxReplicas ({low}..{high})")
        errors += _pod_rules(group, at)
    return errors


def _pod_rules(group: dict[str, Any], where: str) -> list[str]:
    """A head or worker group: its pod template and its ``rayStartParams`` against the pod's resources."""
    errors = []
    pod = group["template"]["spec"]
    at = f"{where}.template.spec"
    volumes = [v["name"] for v in pod.get("volumes", [])]
    errors += [
        f"{at}.volumes: {n!r} is defined twice" for n in sorted({n for n in volumes if volumes.count(n) > 1})
    ]
    names = [c["name"] for c in pod["containers"]]
    errors += [
        f"{at}.containers: {n!r} is used twice" for n in sorted({n for n in names if names.count(n) > 1})
    ]
    for c, container in enumerate(pod["containers"]):
        here = f"{at}.containers.{c}"
        paths = [m["mountPath"] for m in container.get("volumeMounts", [])]
        for m, mount in enumerate(container.get("volumeMounts", [])):
            if mount["name"] not in volumes:
                errors.append(f"{here}.volumeMounts.{m}.name: no volume {mount['name']!r} in the pod")
            if paths.count(mount["mountPath"]) > 1:
                errors.append(f"{here}.volumeMounts.{m}.mountPath: {mount['mountPath']} is mounted twice")
        errors += _resource_rules(container.get("resources", {}), f"{here}.resources")
    ray_container = pod["containers"][0]  # KubeRay runs Ray in the first container
    gpus = parse_quantity(ray_container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))
    advertised = group.get("rayStartParams", {}).get("num-gpus")
    if advertised is not None:
        number = parse_quantity(advertised)
        if number is None or number != int(number):
            errors.append(f"{where}.rayStartParams.num-gpus: {advertised!r} is not a whole number")
        elif gpus is not None and number > gpus:
            errors.append(
                f"{where}.rayStartParams.num-gpus: Ray would advertise {advertised} GPUs on a pod that has "
                f"{gpus} (resources.limits nvidia.com/gpu)"
            )
    return errors


def _resource_rules(resources: dict[str, Any], where: str) -> list[str]:
    errors = []
    requests, limits = resources.get("requests", {}), resources.get("limits", {})
    for name in sorted(set(requests) | set(limits)):
        extended = "/" in name and not name.split("/")[0].endswith("kubernetes.io")
        values = {
            side: parse_quantity(q[name])
            for side, q in (("requests", requests), ("limits", limits))
            if name in q
        }
        if extended and any(v is not None and v != int(v) for v in values.values()):
            errors.append(f"{where}: {name} must be a whole number (an extended resource)")
        request, limit = values.get("requests"), values.get("limits")
        if request is None or limit is None:
            continue
        if extended and request != limit:
            errors.append(f"{where}: {name} requests ({requests[name]}) must equal limits ({limits[name]})")
        elif request > limit:
            errors.append(f"{where}: {name} requests ({requests[name]}) exceed limits ({limits[name]})")
    return errors


# ------------------------------------------------------------------------------------- KubeRay's CRDs


def strict(schema: Any) -> Any:
    """A CRD's openAPIV3Schema as JSON Schema, with unknown fields rejected (the API server prunes them)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if out.pop("x-kubernetes-int-or-string", False):
            out.pop("type", None)
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        preserve = out.get("x-kubernetes-preserve-unknown-fields", False)
        if "properties" in out and "additionalProperties" not in out and not preserve:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@functools.lru_cache(maxsize=2 * len(KINDS))
def crd_schema(kind: str, directory: str) -> dict[str, Any]:
    """The ``ray.io/v1`` openAPIV3Schema of ``kind`` from KubeRay's CRD in ``directory``, made strict."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are ~1 MB each
    with open(Path(directory) / CRD_FILES[kind], encoding="utf-8") as fh:
        crd = yaml.load(fh, Loader=loader)  # a safe loader (C or Python)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == API_VERSION.split("/")[1])
    return dict(strict(version["schema"]["openAPIV3Schema"]))


@functools.lru_cache(maxsize=2 * len(KINDS))
def _crd_validator(kind: str, directory: str) -> Any:
    import jsonschema

    return jsonschema.Draft7Validator(crd_schema(kind, directory))


def crd_errors(manifest: dict[str, Any], directory: Path) -> list[str]:
    """What is wrong with ``manifest`` by KubeRay's CRD schema in ``directory``."""
    kind = manifest.get("kind")
    if kind not in KINDS:
        return [f"kind: {kind!r} is not one of {', '.join(KINDS)}"]
    return _schema_errors(_crd_validator(str(kind), str(directory)), manifest)
