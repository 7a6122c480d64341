"""An SGLang Deployment for the production model: the manifest, the rollout plan, the rollout's state.

The Deployment rolls with ``maxUnavailable: 0``: a new pod takes traffic only once SGLang's readiness
probe (``/health_generate``, a real generation) passes, and an old pod goes only then. The pod template
carries the version and registry revision, so a new version is a new ReplicaSet and a retry of the same
revision changes nothing. The template it replaced is kept in an annotation of the Deployment: a rollout
that does not become ready is rolled back to it (what ``kubectl rollout undo`` does with ReplicaSets).

A LoRA version whose base model is what the pods already serve, with the adapter on a path the pods
mount, is loaded into the running pods through SGLang's ``/load_lora_adapter`` (no restart).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from continuous_learning.config_after_gate import SGLangServingSettings
from continuous_learning.contracts import ProductionModelEvent
from continuous_learning.serving.handoff import MODEL_VERSION_ENV

PREFIX = "continuous-learning.io"
VERSION, REVISION, MODEL_URI = f"{PREFIX}/version", f"{PREFIX}/revision", f"{PREFIX}/model-uri"
LORA_VERSION = f"{PREFIX}/lora-version"
PREVIOUS_TEMPLATE = f"{PREFIX}/previous-template"
MODELS_DIR = "/models"

Phase = Literal["ready", "progressing", "failed"]


@dataclass(frozen=True)
class RolloutPlan:
    """``create``/``update``: apply ``manifest`` and wait for its rollout; ``load_lora``: POST
    ``lora_request`` to each ready pod's ``/load_lora_adapter``; ``wait``: this revision is applied, wait
    for it; ``noop``: already served."""

    action: Literal["create", "update", "load_lora", "wait", "noop"]
    reason: str
    manifest: dict[str, Any] | None = None
    lora_request: dict[str, str] | None = None


def labels(settings: SGLangServingSettings) -> dict[str, str]:
    return {"app.kubernetes.io/name": "sglang", "app.kubernetes.io/instance": settings.deployment_name,
            "app.kubernetes.io/managed-by": "continuous-learning"}  # fmt: skip


def local_path(uri: str, settings: SGLangServingSettings) -> str | None:
    """Where the pods read ``uri`` without copying it: a path under the shared mount, else None."""
    path = uri.removeprefix("file://")
    if settings.shared_claim and path.startswith(settings.shared_mount_path.rstrip("/") + "/"):
        return path
    return None


def _model_source(
    settings: SGLangServingSettings, event: ProductionModelEvent
) -> tuple[str, list[dict[str, Any]]]:
    """The model path the server reads, and the init containers that put it there."""
    shared = local_path(event.model_uri, settings)
    if shared:
        return shared, []
    if not event.model_uri.startswith("s3://"):
        raise ValueError(
            f"{event.model_uri}: the SGLang pods read models from s3:// (copied at start) or from under "
            f"serving.sglang.shared_mount_path ({settings.shared_mount_path}) with shared_claim set"
        )
    target = f"{MODELS_DIR}/{event.version}"
    sync = {"name": "fetch-model", "image": settings.downloader_image,
            "command": ["aws", "s3", "sync", "--only-show-errors", event.model_uri.rstrip("/") + "/", target],
            "volumeMounts": [{"name": "models", "mountPath": MODELS_DIR}]}  # fmt: skip
    return target, [sync]


def _server(settings: SGLangServingSettings, event: ProductionModelEvent, model_path: str) -> dict[str, Any]:
    args = ["--model-path", model_path, "--served-model-name", settings.deployment_name,
            "--host", "0.0.0.0", "--port", str(settings.port), "--tp", str(settings.tensor_parallel)]  # fmt: skip
    if settings.lora_hot_load:
        args += [
            "--enable-lora",
            "--max-lora-rank",
            str(settings.max_lora_rank),
            "--lora-target-modules",
            "all",
        ]
    args += settings.extra_args
    mounts: list[dict[str, Any]] = [
        {"name": "shm", "mountPath": "/dev/shm"},
        {"name": "models", "mountPath": MODELS_DIR},
    ]
    if settings.shared_claim:
        mounts.append({"name": "shared", "mountPath": settings.shared_mount_path, "readOnly": True})
    probe = {"httpGet": {"path": "/health_generate", "port": settings.port}, "periodSeconds": 10,
             "timeoutSeconds": 30, "failureThreshold": 3}  # fmt: skip
    limits = {"nvidia.com/gpu": str(settings.gpus)} if settings.gpus else {}
    return {
        "name": "sglang",
        "image": settings.image,
        "command": ["python3", "-m", "sglang.launch_server"],
        "args": args,
        "env": [{"name": MODEL_VERSION_ENV, "value": event.version}],
        "ports": [{"name": "http", "containerPort": settings.port}],
        "readinessProbe": probe,
        # loading weights takes minutes: liveness starts counting only once the server answered
        "startupProbe": {
            "httpGet": {"path": "/health", "port": settings.port},
            "periodSeconds": 10,
            "failureThreshold": max(1, settings.progress_deadline_s // 10),
        },
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": settings.port},
            "periodSeconds": 20,
            "timeoutSeconds": 10,
            "failureThreshold": 3,
        },
        "resources": {"limits": limits, "requests": dict(limits)},
        "volumeMounts": mounts,
        "securityContext": {"allowPrivilegeEscalation": False},
    }


def deployment_manifest(
    settings: SGLangServingSettings,
    event: ProductionModelEvent,
    previous_template: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole Deployment serving ``event``'s model; ``previous_template`` (the template it replaces)
    is kept in an annotation for the rollback."""
    model_path, init = _model_source(settings, event)
    marks = {VERSION: event.version, REVISION: str(event.revision), MODEL_URI: event.model_uri}
    volumes: list[dict[str, Any]] = [
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}},
        {"name": "models", "emptyDir": {}},
    ]
    if settings.shared_claim:
        volumes.append({"name": "shared", "persistentVolumeClaim": {"claimName": settings.shared_claim}})
    pod: dict[str, Any] = {"containers": [_server(settings, event, model_path)], "volumes": volumes}
    if init:
        pod["initContainers"] = init
    if settings.service_account:
        pod["serviceAccountName"] = settings.service_account
    annotations = dict(marks)
    if previous_template is not None:
        annotations[PREVIOUS_TEMPLATE] = json.dumps(previous_template, sort_keys=True, separators=(",", ":"))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": settings.deployment_name,
            "namespace": settings.namespace,
            "labels": labels(settings),
            "annotations": annotations,
        },
        "spec": {
            "replicas": settings.replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/instance": settings.deployment_name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "progressDeadlineSeconds": settings.progress_deadline_s,
            "revisionHistoryLimit": 5,
            "template": {"metadata": {"labels": labels(settings), "annotations": marks}, "spec": pod},
        },
    }


def _template_marks(deployment: Mapping[str, Any]) -> Mapping[str, str]:
    return ((deployment.get("spec") or {}).get("template") or {}).get("metadata", {}).get("annotations") or {}


def plan(
    current: Mapping[str, Any] | None, event: ProductionModelEvent, settings: SGLangServingSettings
) -> RolloutPlan:
    """What to do to serve ``event`` given the Deployment as it is (None: not there yet)."""
    if current is None:
        return RolloutPlan("create", f"no Deployment yet: creating it with {event.version}",
                           deployment_manifest(settings, event))  # fmt: skip
    marks = _template_marks(current)
    meta = (current.get("metadata") or {}).get("annotations") or {}
    if marks.get(REVISION) == str(event.revision) and marks.get(VERSION) == event.version:
        return RolloutPlan(
            "wait", f"{event.version} (revision {event.revision}) is applied: waiting for its rollout"
        )
    if meta.get(LORA_VERSION) == f"{event.version}@{event.revision}":
        return RolloutPlan("noop", f"adapter {event.version} already loaded into the running pods")
    adapter = local_path(event.adapter_uri, settings) if event.adapter_uri else None
    if (
        settings.lora_hot_load
        and adapter
        and event.base_model_uri
        and marks.get(MODEL_URI) == event.base_model_uri
        and rollout_phase(current) == "ready"
    ):
        return RolloutPlan("load_lora", f"{event.version} is a LoRA adapter on the served base model: loading it "
                           "into the running pods (no restart)", lora_request={"lora_name": event.version,
                                                                               "lora_path": adapter})  # fmt: skip
    previous = (current.get("spec") or {}).get("template")
    return RolloutPlan("update", f"rolling {marks.get(VERSION)} -> {event.version}",
                       deployment_manifest(settings, event, previous))  # fmt: skip


def rollout_phase(deployment: Mapping[str, Any]) -> Phase:
    """``kubectl rollout status`` as a function: ``ready`` when the controller saw this spec and every
    replica is updated, ready and available with no old one left; ``failed`` when the progress deadline
    passed; else ``progressing``."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation")
    if generation is not None and int(status.get("observedGeneration") or 0) < int(generation):
        return "progressing"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return "failed"
    want = int(spec.get("replicas", 1))
    counts = [
        int(status.get(k) or 0) for k in ("updatedReplicas", "readyReplicas", "availableReplicas", "replicas")
    ]
    return "ready" if all(c == want for c in counts) else "progressing"


def rollback_template(deployment: Mapping[str, Any]) -> dict[str, Any] | None:
    """The pod template a failed rollout replaced (None: the Deployment was new, nothing to go back to)."""
    saved = ((deployment.get("metadata") or {}).get("annotations") or {}).get(PREVIOUS_TEMPLATE)
    return json.loads(saved) if saved else None


def merge_patch(current: Any, desired: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns ``current`` into ``desired``: maps recursively, a key
    ``desired`` lacks set to None (removed), anything else (lists too) replaced whole."""
    if not isinstance(current, Mapping) or not isinstance(desired, Mapping):
        return desired
    patch = {k: merge_patch(current.get(k), v) for k, v in desired.items() if current.get(k) != v}
    patch.update({k: None for k in current if k not in desired})
    return patch


def apply_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch making the Deployment ``current`` what ``desired`` asks: its labels, annotations and
    spec (what the API server adds, status and server metadata, is left alone)."""
    cur_meta, new_meta = current.get("metadata") or {}, desired.get("metadata") or {}
    return {
        "metadata": {
            k: merge_patch(cur_meta.get(k) or {}, new_meta.get(k) or {}) for k in ("labels", "annotations")
        },
        "spec": merge_patch(current.get("spec") or {}, desired.get("spec") or {}),
    }
