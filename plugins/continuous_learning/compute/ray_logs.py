"""Ray's logs kept past the cluster's teardown, on KubeRay: a Fluent Bit sidecar in every Ray pod tails
Ray's session logs (job drivers, i.e. the trainer's output; workers; raylet; GCS) from a volume shared with
the Ray container at ``/tmp/ray``, and ships them to a CloudWatch Logs group (Terraform's ``ray`` group,
infra/terraform/envs/prod: ``/<name>/ray``). The pod's service account (EKS Pod Identity, the ``ray``
role) may write to that group. One log stream per pod and file: ``<cluster>/<pod>/<file tag>``.

Pure rendering: the container and the volume go into the pod templates of
:func:`~continuous_learning.compute.kuberay_manifests.render_raycluster`. Locally, the head's logs are
copied into the run's storage folder instead (:func:`continuous_learning.compute.local_ray.keep_logs`).
"""

from __future__ import annotations

import shlex
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: Where Ray writes (its default temp dir); the shared volume is mounted here in both containers.
RAY_TMP = "/tmp/ray"
VOLUME = "ray-logs"
CONTAINER = "log-shipper"
#: Ray's log files: ``.log`` (job drivers, GCS, dashboard), ``.out``/``.err`` (workers, raylet).
PATTERNS = ("*.log", "*.out", "*.err")


class LogShipping(BaseModel):
    """Where a RayCluster's pods ship their logs."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    log_group: str = Field(
        pattern=r"^[A-Za-z0-9_#/.\-]{1,512}$", description="an existing CloudWatch Logs group"
    )
    region: str | None = Field(None, description="its region; None: the pod's (AWS_REGION from Pod Identity)")
    image: str = Field(min_length=1, description="aws-for-fluent-bit (has the cloudwatch_logs output)")
    cpu: str = "100m"
    memory: str = "128Mi"
    flush_s: int = Field(5, ge=1, le=60)


def fluent_bit_command(shipping: LogShipping) -> list[str]:
    """The sidecar's command: Fluent Bit from the command line (no ConfigMap to create and delete)."""
    logs = f"{RAY_TMP}/session_latest/logs"
    args = [
        "/fluent-bit/bin/fluent-bit", "-f", str(shipping.flush_s),
        "-i", "tail", "-p", "path=" + ",".join(f"{logs}/{p}" for p in PATTERNS), "-p", "tag=ray.*",
        "-p", "read_from_head=true", "-p", "refresh_interval=5", "-p", "skip_long_lines=on",
        "-o", "cloudwatch_logs", "-p", "match=ray.*", "-p", f"log_group_name={shipping.log_group}",
        "-p", "auto_create_group=false", "-p", "log_key=log",
    ]  # fmt: skip
    if shipping.region:
        args += ["-p", f"region={shipping.region}"]
    # the stream prefix names the cluster and the pod (from the downward API, expanded by the shell)
    command = " ".join(shlex.quote(a) for a in args) + ' -p "log_stream_prefix=${RAY_CLUSTER}/${POD_NAME}/"'
    return ["/bin/sh", "-c", "exec " + command]


def log_shipper(shipping: LogShipping, cluster_name: str) -> dict[str, Any]:
    """The sidecar container of a Ray pod."""
    resources = {"cpu": shipping.cpu, "memory": shipping.memory}
    return {
        "name": CONTAINER,
        "image": shipping.image,
        "imagePullPolicy": "IfNotPresent",
        "command": fluent_bit_command(shipping),
        "env": [
            {"name": "RAY_CLUSTER", "value": cluster_name},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "resources": {"requests": resources, "limits": resources},
        "volumeMounts": [{"name": VOLUME, "mountPath": RAY_TMP, "readOnly": True}],
    }


def ray_logs_mount() -> dict[str, Any]:
    """The Ray container's mount of the shared log volume."""
    return {"name": VOLUME, "mountPath": RAY_TMP}


def ray_logs_volume() -> dict[str, Any]:
    return {"name": VOLUME, "emptyDir": {}}
