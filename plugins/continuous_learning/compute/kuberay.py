"""KubeRay RayCluster and RayJob: the API calls (``KubeRayClient``), over the manifests of ``kuberay_manifests``
(re-exported here: ``kuberay.render_raycluster`` and the rest stay where callers find them).

No Airflow here: the Airflow adapters (hooks, triggers, operators) give this module a Kubernetes
``CustomObjectsApi`` (and a ``CoreV1Api`` for the driver log through the head service's proxy).

Every object carries labels from its DAG run and task, so a retry finds what an earlier attempt
created (re-attach) and a teardown finds what a failed task left behind.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from continuous_learning.compute.kuberay_manifests import (
    DASHBOARD_PORT,
    ENTRYPOINT_WORKER_SHARE,
    FSX_WORK_SUBDIR,
    GROUP,
    INSTANCE_GROUP_LABEL,
    LABEL_PREFIX,
    NODE_HEALTH_LABEL,
    RAYCLUSTERS,
    RAYJOBS,
    VERSION,
    WORKER_RESOURCE,
    ClusterPhase,
    HeadGroupSpec,
    JobPhase,
    KubeRayError,
    ManifestInvalid,
    RayClusterSpec,
    WorkerGroupSpec,
    cluster_name_for,
    cluster_phase,
    cluster_spec_from_settings,
    fsx_work_dir,
    identity_key,
    job_phase,
    label_selector,
    render_raycluster,
    render_rayjob,
    run_labels,
)
from continuous_learning.compute.manifest_validation import (
    CRDS_ENV,
    crd_directory,
    manifest_errors,
    validate_manifest,
)

__all__ = [
    "CRDS_ENV",
    "DASHBOARD_PORT",
    "ENTRYPOINT_WORKER_SHARE",
    "FSX_WORK_SUBDIR",
    "GROUP",
    "INSTANCE_GROUP_LABEL",
    "LABEL_PREFIX",
    "NODE_HEALTH_LABEL",
    "RAYCLUSTERS",
    "RAYJOBS",
    "RETRYABLE",
    "VERSION",
    "WORKER_RESOURCE",
    "ClusterPhase",
    "HeadGroupSpec",
    "JobPhase",
    "KubeRayClient",
    "KubeRayError",
    "ManifestInvalid",
    "RayClusterSpec",
    "WorkerGroupSpec",
    "cluster_name_for",
    "cluster_phase",
    "cluster_spec_from_settings",
    "crd_directory",
    "fsx_work_dir",
    "identity_key",
    "job_phase",
    "label_selector",
    "manifest_errors",
    "next_attempt",
    "render_raycluster",
    "render_rayjob",
    "run_labels",
    "validate_manifest",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

# -------------------------------------------------------------------------------------------- API calls

RETRYABLE = {409, 429, 500, 502, 503, 504}


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return int(status) if isinstance(status, int) else None


class KubeRayClient:
    """RayCluster/RayJob calls with retries on 409/429/5xx and connection errors.

    :param custom_api: a ``kubernetes.client.CustomObjectsApi`` (or one with the same methods).
    :param core_api: a ``kubernetes.client.CoreV1Api`` for the driver log (head service proxy).
    """

    def __init__(
        self, custom_api: Any, core_api: Any = None, retries: int = 5, backoff_s: float = 0.5
    ) -> None:
        self.custom = custom_api
        self.core = core_api
        self.retries = retries
        self.backoff_s = backoff_s

    def _call(self, what: str, fn: Callable[[], T], retry_conflict: bool = True) -> T:
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except Exception as exc:
                status = _status(exc)
                transient = status in RETRYABLE and (retry_conflict or status != 409)
                transient = transient or (status is None and isinstance(exc, (OSError, ConnectionError)))
                if not transient or attempt == self.retries:
                    raise
                delay = min(self.backoff_s * 2**attempt, 10.0)
                log.warning("%s: Kubernetes API answered %s; retry %d in %.1f s", what, status or exc,
                            attempt + 1, delay)  # fmt: skip
                time.sleep(delay)
        raise AssertionError("unreachable")

    def create_or_get(self, plural: str, manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create ``manifest``; when it exists already (409 AlreadyExists), return the existing one."""
        meta = manifest["metadata"]

        def create() -> dict[str, Any]:
            return dict(
                self.custom.create_namespaced_custom_object(
                    GROUP, VERSION, meta["namespace"], plural, manifest
                )
            )

        try:
            return self._call(f"create {plural}/{meta['name']}", create, retry_conflict=False), True
        except Exception as exc:
            if _status(exc) != 409:
                raise
        existing = self.get(plural, meta["namespace"], meta["name"])
        if existing is None:  # conflict with an object being deleted: retry once more after a pause
            time.sleep(self.backoff_s)
            return self._call(f"create {plural}/{meta['name']}", create), True
        log.info("%s %s exists: re-attaching", plural, meta["name"])
        return existing, False

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        def fetch() -> dict[str, Any] | None:
            try:
                return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name))
            except Exception as exc:
                if _status(exc) == 404:
                    return None
                raise

        return self._call(f"get {plural}/{name}", fetch)

    def find(self, plural: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        """Objects carrying all ``labels`` (filtered here too, whatever the server's selector support)."""
        answer = self._call(
            f"list {plural}",
            lambda: self.custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, label_selector=label_selector(labels)
            ),
        )
        items = [dict(i) for i in answer.get("items", [])]
        return [
            i for i in items
            if all((i.get("metadata", {}).get("labels") or {}).get(k) == v for k, v in labels.items())
        ]  # fmt: skip

    def delete(self, plural: str, namespace: str, name: str) -> bool:
        """Delete (foreground propagation); ``False`` when it was already gone."""

        def remove() -> bool:
            try:
                self.custom.delete_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural, name, propagation_policy="Foreground"
                )
                return True
            except Exception as exc:
                if _status(exc) == 404:
                    return False
                raise

        return self._call(f"delete {plural}/{name}", remove)

    def delete_matching(self, plural: str, namespace: str, labels: dict[str, str]) -> list[str]:
        deleted = []
        for obj in self.find(plural, namespace, labels):
            name = obj["metadata"]["name"]
            if self.delete(plural, namespace, name):
                deleted.append(name)
        return deleted

    def job_logs(self, namespace: str, cluster_name: str, submission_id: str) -> str:
        """The driver's log from the Ray dashboard, through the API server's service proxy."""
        if self.core is None:
            return ""
        path = f"api/jobs/{submission_id}/logs"
        try:
            answer = self._call(
                f"logs {submission_id}",
                lambda: self.core.connect_get_namespaced_service_proxy_with_path(
                    f"{cluster_name}-head-svc:{DASHBOARD_PORT}", namespace, path, _preload_content=False
                ),
            )
        except Exception as exc:
            if _status(exc) != 403:
                raise
            if not getattr(self, "_logs_forbidden_warned", False):  # once per client, not every poll
                self._logs_forbidden_warned = True
                log.warning(
                    "driver log of Ray job %s not readable: the Kubernetes API refused `get services/proxy` in "
                    "namespace %s (403 Forbidden). Grant it in the Role bound to Airflow's identity (apiGroups "
                    "[\"\"], resources [\"services/proxy\"], verbs [\"get\"]; infra/helm/continuous-learning/"
                    "templates/rbac.yaml has it); the job itself is not affected", submission_id, namespace,
                )  # fmt: skip
            return ""
        raw = answer.data if hasattr(answer, "data") else answer
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        try:
            return str(json.loads(text).get("logs", ""))
        except (ValueError, AttributeError):
            return text


def next_attempt(jobs: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, int]:
    """Given a task's RayJobs, the one to re-attach to (running or succeeded) and the next attempt number."""

    def number(obj: dict[str, Any]) -> int:
        return int((obj["metadata"].get("labels") or {}).get(f"{LABEL_PREFIX}/attempt", "0"))

    ordered = sorted(jobs, key=number)
    if not ordered:
        return None, 1
    last = ordered[-1]
    if job_phase(last) in ("pending", "running", "succeeded"):
        return last, number(last)
    return None, number(last) + 1
