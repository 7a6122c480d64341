"""KubeRay RayCluster and RayJob manifests: typed specs, labels and names, rendering, status phases
(validation: :mod:`continuous_learning.compute.manifest_validation`).

No Airflow and no API calls here (``kuberay`` makes those). Every object carries labels from its DAG run
and task, so a retry finds what an earlier attempt created (re-attach) and a teardown finds what a failed
task left behind.

Over 400 lines on purpose: the head and worker pod templates, the RayJob around them and the labels that
tie them to a run are rendered together, and splitting them would pass half-built manifests between modules.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any, Literal

from continuous_learning.compute.ray_logs import LogShipping, log_shipper, ray_logs_mount, ray_logs_volume
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

GROUP = "ray.io"
VERSION = "v1"
RAYCLUSTERS = "rayclusters"
RAYJOBS = "rayjobs"
LABEL_PREFIX = "continuous-learning.io"
INSTANCE_GROUP_LABEL = "sagemaker.amazonaws.com/instance-group-name"
NODE_HEALTH_LABEL = "sagemaker.amazonaws.com/node-health-status"
DASHBOARD_PORT = 8265
#: A custom Ray resource that only worker pods advertise (one unit each). Every RayJob's entrypoint asks
#: for a sliver of it, so the driver (VeRL's main_ppo driver, the in-process SGLang evaluation, the model
#: import) runs on a worker pod, where the GPUs, the FSx mount and the memory are, never on the small head.
WORKER_RESOURCE = "cl_worker_node"
ENTRYPOINT_WORKER_SHARE = 0.01
#: Where a run's work folder (VeRL's data, checkpoints, merge) lives on the FSx mount, by run key.
FSX_WORK_SUBDIR = "continuous-learning/runs"


class KubeRayError(RuntimeError):
    """A KubeRay object could not be created, read or deleted, or reached a failed state."""


class ManifestInvalid(KubeRayError):
    """A rendered manifest does not match the KubeRay CRD schema."""


# --------------------------------------------------------------------------------------------- specs


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HeadGroupSpec(_Spec):
    cpu: str = "2"  # the head runs Ray's control plane only (no tasks, no drivers): a system node fits it
    memory: str = "8Gi"
    instance_group: str | None = Field(
        None, description="HyperPod instance group for the head; None: any node"
    )


class WorkerGroupSpec(_Spec):
    name: str = Field("gpu", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=30)
    instance_group: str = Field(min_length=1, description="HyperPod instance group the workers run on")
    replicas: int = Field(1, ge=1, le=16, description="worker nodes: one Ray worker pod per node")
    gpus_per_node: int = Field(8, ge=0, le=16)
    efa_per_node: int = Field(0, ge=0, le=32)
    cpu: str = "180"
    memory: str = "1800Gi"


class RayClusterSpec(_Spec):
    """What a training Ray cluster on HyperPod looks like; rendered into a ray.io/v1 RayCluster."""

    name: str = Field(pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$", max_length=48)
    namespace: str = Field(min_length=1)
    image: str = Field(min_length=1)
    ray_version: str = "2.60.0"
    service_account: str | None = None
    head: HeadGroupSpec = HeadGroupSpec()
    workers: list[WorkerGroupSpec] = Field(min_length=1)
    shm_size: str = "64Gi"
    fsx_claim: str | None = None
    fsx_mount_path: str = "/fsx"
    env: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    log_shipping: LogShipping | None = Field(None, description="a Fluent Bit sidecar ships Ray's logs")

    @property
    def nnodes(self) -> int:
        """Trainer nodes: the worker pods (one per HyperPod node)."""
        return sum(w.replicas for w in self.workers)

    @property
    def n_gpus_per_node(self) -> int:
        return max(w.gpus_per_node for w in self.workers)


# ----------------------------------------------------------------------------------- names and labels


def _label_value(value: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", value)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned) or "x"


def identity_key(*parts: str) -> str:
    """A short, stable hash of e.g. (dag_id, run_id[, task_id]) used in names and label selectors."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:12]


def run_labels(
    dag_id: str, run_id: str, task_id: str | None = None, map_index: int | None = None
) -> dict[str, str]:
    """Labels for an object created by a DAG run's task (values made label-safe; keys hash the raw ids).

    A mapped task instance (``map_index`` >= 0) gets its own ``map-index`` label and task key, as the cncf
    provider labels its pods: mapped instances share a task id, and must not find each other's jobs.
    """
    labels = {
        "app.kubernetes.io/managed-by": "continuous-learning",
        f"{LABEL_PREFIX}/dag-id": _label_value(dag_id),
        f"{LABEL_PREFIX}/run-id": _label_value(run_id),
        f"{LABEL_PREFIX}/run-key": identity_key(dag_id, run_id),
    }
    if task_id is not None:
        labels[f"{LABEL_PREFIX}/task-id"] = _label_value(task_id)
        labels[f"{LABEL_PREFIX}/task-key"] = identity_key(dag_id, run_id, task_id)
        if map_index is not None and map_index >= 0:
            labels[f"{LABEL_PREFIX}/map-index"] = str(map_index)
            labels[f"{LABEL_PREFIX}/task-key"] = identity_key(dag_id, run_id, task_id, str(map_index))
    return labels


def cluster_name_for(dag_id: str, run_id: str) -> str:
    prefix = re.sub(r"[^a-z0-9]+", "-", dag_id.lower()).strip("-")[:20] or "run"
    return f"{prefix}-{identity_key(dag_id, run_id)}"


def label_selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


# ------------------------------------------------------------------------------------------ rendering


def _resources(cpu: str, memory: str, gpus: int = 0, efa: int = 0) -> dict[str, Any]:
    limits: dict[str, Any] = {"cpu": cpu, "memory": memory}
    if gpus:
        limits["nvidia.com/gpu"] = gpus
    if efa:
        limits["vpc.amazonaws.com/efa"] = efa
    return {"requests": dict(limits), "limits": limits}


def _pod_template(
    spec: RayClusterSpec,
    *,
    container: str,
    resources: dict[str, Any],
    instance_group: str | None,
    gpus: bool,
    efa: bool,
) -> dict[str, Any]:
    env = [{"name": k, "value": v} for k, v in sorted(spec.env.items())]
    if efa:
        env += [
            {"name": "FI_PROVIDER", "value": "efa"},
            {"name": "FI_EFA_USE_DEVICE_RDMA", "value": "1"},
            {"name": "NCCL_PROTO", "value": "simple"},
            {"name": "NCCL_SOCKET_IFNAME", "value": "^lo,docker"},
        ]
    if gpus:
        env += [{"name": "NCCL_DEBUG", "value": "WARN"}, {"name": "NCCL_NVLS_ENABLE", "value": "0"}]
        # a job driver reserves no GPU (VeRL's workers take them all) but must see them (SGLang evaluation)
        env += [{"name": "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "value": "0"}]
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}]
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}}
    ]
    if spec.fsx_claim:
        mounts.append({"name": "fsx", "mountPath": spec.fsx_mount_path})
        volumes.append({"name": "fsx", "persistentVolumeClaim": {"claimName": spec.fsx_claim}})
    sidecars = []
    if spec.log_shipping is not None:  # Ray's logs outlive the pod (compute/ray_logs.py)
        mounts.append(ray_logs_mount())
        volumes.append(ray_logs_volume())
        sidecars.append(log_shipper(spec.log_shipping, spec.name))
    pod: dict[str, Any] = {
        "containers": [
            {
                "name": container,
                "image": spec.image,
                "imagePullPolicy": "IfNotPresent",
                "resources": resources,
                "env": env,
                "volumeMounts": mounts,
                "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", "ray stop"]}}},
            },
            *sidecars,
        ],
        "volumes": volumes,
    }
    if instance_group:
        pod["nodeSelector"] = {INSTANCE_GROUP_LABEL: instance_group, NODE_HEALTH_LABEL: "Schedulable"}
    tolerations = []
    if gpus:
        tolerations.append({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"})
    if efa:
        tolerations.append({"key": "vpc.amazonaws.com/efa", "operator": "Exists", "effect": "NoSchedule"})
    if tolerations:
        pod["tolerations"] = tolerations
    if spec.service_account:
        pod["serviceAccountName"] = spec.service_account
    return {"metadata": {"labels": dict(spec.labels)}, "spec": pod}


def _ray_resources_param() -> str:
    """``rayStartParams.resources`` of a worker group: KubeRay puts it into the ``ray start`` shell command
    as ``--resources=<value>``, so the JSON travels single-quoted, as KubeRay itself writes it (its
    resource parsing trims those quotes)."""
    return f"'{json.dumps({WORKER_RESOURCE: 1})}'"


def render_raycluster(spec: RayClusterSpec) -> dict[str, Any]:
    """The ray.io/v1 RayCluster manifest for ``spec``: a head and one worker group per spec entry."""
    head_resources = _resources(spec.head.cpu, spec.head.memory)
    head = {
        "serviceType": "ClusterIP",
        # no CPUs or GPUs for Ray work: tasks, actors and job drivers all go to the workers
        "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0", "num-gpus": "0"},
        "template": _pod_template(
            spec, container="ray-head", resources=head_resources,
            instance_group=spec.head.instance_group, gpus=False, efa=False,
        ),
    }  # fmt: skip
    workers = []
    for group in spec.workers:
        workers.append(
            {
                "groupName": group.name,
                "replicas": group.replicas,
                "minReplicas": group.replicas,
                "maxReplicas": group.replicas,
                "numOfHosts": 1,
                "rayStartParams": {"num-gpus": str(group.gpus_per_node), "resources": _ray_resources_param()},
                "template": _pod_template(
                    spec,
                    container="ray-worker",
                    resources=_resources(group.cpu, group.memory, group.gpus_per_node, group.efa_per_node),
                    instance_group=group.instance_group,
                    gpus=group.gpus_per_node > 0,
                    efa=group.efa_per_node > 0,
                ),
            }
        )
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RayCluster",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": {**spec.labels, "ray.io/cluster": spec.name},
            "annotations": dict(spec.annotations),
        },
        "spec": {
            "rayVersion": spec.ray_version,
            "enableInTreeAutoscaling": False,
            "headGroupSpec": head,
            "workerGroupSpecs": workers,
        },
    }


def render_rayjob(
    *,
    name: str,
    namespace: str,
    entrypoint: str,
    job_id: str,
    env: dict[str, str],
    labels: dict[str, str],
    annotations: dict[str, str] | None = None,
    cluster_name: str | None = None,
    cluster_spec: RayClusterSpec | None = None,
    active_deadline_s: int | None = None,
    startup_deadline_s: int | None = None,
) -> dict[str, Any]:
    """A ray.io/v1 RayJob: on an existing cluster (``cluster_name``) or its own (``cluster_spec``).

    The entrypoint asks for a share of :data:`WORKER_RESOURCE`, which only worker pods advertise: the
    driver runs on a worker pod (its GPUs visible: Ray leaves ``CUDA_VISIBLE_DEVICES`` alone for a
    process that reserved none), never on the head, which offers no CPUs, GPUs or custom resources.
    """
    if (cluster_name is None) == (cluster_spec is None):
        raise ValueError("give exactly one of cluster_name and cluster_spec")
    spec: dict[str, Any] = {
        "entrypoint": entrypoint,
        "entrypointResources": json.dumps({WORKER_RESOURCE: ENTRYPOINT_WORKER_SHARE}),
        "jobId": job_id,
        "runtimeEnvYAML": json.dumps({"env_vars": env}, sort_keys=True),  # JSON is YAML
        "submissionMode": "HTTPMode",
        "backoffLimit": 0,
    }
    if cluster_name is not None:
        spec["clusterSelector"] = {"ray.io/cluster": cluster_name}
    else:
        assert cluster_spec is not None
        spec["rayClusterSpec"] = render_raycluster(cluster_spec)["spec"]
        spec["shutdownAfterJobFinishes"] = True
        spec["ttlSecondsAfterFinished"] = 60
    if active_deadline_s:
        spec["activeDeadlineSeconds"] = int(active_deadline_s)
    if startup_deadline_s:
        spec["preRunningDeadlineSeconds"] = int(startup_deadline_s)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RayJob",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels),
            "annotations": dict(annotations or {}),
        },
        "spec": spec,
    }


# ------------------------------------------------------------------------------------------------ status

ClusterPhase = Literal["ready", "failed", "pending"]
JobPhase = Literal["pending", "running", "succeeded", "failed", "stopped"]


def cluster_phase(obj: dict[str, Any]) -> ClusterPhase:
    state = str((obj.get("status") or {}).get("state") or "").lower()
    if state == "ready":
        return "ready"
    if state == "failed":
        return "failed"
    return "pending"


def job_phase(obj: dict[str, Any]) -> JobPhase:
    status = obj.get("status") or {}
    job = str(status.get("jobStatus") or "").upper()
    deployment = str(status.get("jobDeploymentStatus") or "")
    if job == "SUCCEEDED":
        return "succeeded"
    if job == "STOPPED":
        return "stopped"
    if job == "FAILED" or deployment in ("Failed", "ValidationFailed"):
        return "failed"
    if job == "RUNNING" or deployment == "Running":
        return "running"
    return "pending"


def fsx_work_dir(mount_path: str, labels: dict[str, str], name: str) -> str:
    """``<mount>/continuous-learning/runs/<run key>``: the run's work folder on FSx (run key from the
    run labels, else the cluster name, which carries it too)."""
    key = labels.get(f"{LABEL_PREFIX}/run-key") or name
    return f"{mount_path.rstrip('/')}/{FSX_WORK_SUBDIR}/{key}"


def cluster_spec_from_settings(
    settings: Any, name: str, labels: dict[str, str], env: dict[str, str]
) -> RayClusterSpec:
    """The run's RayClusterSpec from ``settings.kuberay`` / ``settings.hyperpod`` (a config.Settings).

    With ``kuberay.fsx_claim``, every pod gets ``CL_WORK_DIR`` on the FSx mount, one folder per DAG run
    (its run key): the trainer keeps VeRL's data, checkpoints and merge there, where every node sees them.
    """
    k = settings.kuberay
    # a stopped job (the task killed or marked failed) gets SIGTERM, then this long before SIGKILL (Ray's
    # default is 3 s): enough for the trainer to merge its latest checkpoint (trainer.stop_reserve_s)
    env = {**env, "RAY_JOB_STOP_WAIT_TIME_S": str(int(settings.trainer.stop_reserve_s))}
    if k.fsx_claim:
        env = {**env, "CL_WORK_DIR": fsx_work_dir(k.fsx_mount_path, labels, name)}
    return RayClusterSpec(
        name=name,
        namespace=k.namespace,
        image=k.image,
        ray_version=k.ray_version,
        service_account=k.service_account,
        head=HeadGroupSpec(cpu=k.head_cpu, memory=k.head_memory),
        workers=[
            WorkerGroupSpec(
                instance_group=settings.hyperpod.instance_group,
                replicas=k.worker_nodes,
                gpus_per_node=k.gpus_per_node,
                efa_per_node=k.efa_per_node,
                cpu=k.worker_cpu,
                memory=k.worker_memory,
            )
        ],
        shm_size=k.shm_size,
        fsx_claim=k.fsx_claim,
        fsx_mount_path=k.fsx_mount_path,
        env=env,
        labels=labels,
        log_shipping=LogShipping(
            log_group=k.log_group, region=settings.hyperpod.region_name, image=k.log_shipper_image
        )
        if k.log_group
        else None,
    )
