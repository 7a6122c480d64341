"""SageMaker HyperPod capacity: does instance group G of cluster C have N schedulable nodes?

Pure decisions over ``describe_cluster`` / ``list_cluster_nodes`` answers (no Airflow, no client):
the Airflow hook makes the calls, this module says what to do with them. The waiting itself is
written once, as the botocore waiter model in ``waiters/sagemaker.json``.

A scale-up is also a :class:`CapacityRecord`: the caller keeps it in storage under the run's folder, so a
retry (which starts with cleared XComs) and the teardown know the count the run found, and capacity goes
back to it whatever attempt scaled and whatever attempt releases.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from continuous_learning.contracts import CapacityPlanRef
from pydantic import BaseModel, ConfigDict, Field

WAITERS_PATH = Path(__file__).parent / "waiters" / "sagemaker.json"
AT_TARGET_WAITER = "hyperpod_instance_groups_at_target"
NODES_RUNNING_WAITER = "hyperpod_nodes_running"
UNHEALTHY_NODE_STATES = {"Failure", "ShuttingDown"}


class CapacityError(RuntimeError):
    """The instance group is missing, cannot provide the nodes, or its nodes are not healthy."""


Action = Literal["none", "scale", "wait"]

#: GPU of SageMaker HyperPod instance types (``ml.<family>.<size>``), by family: it selects the trainer's
#: tuned VeRL profile (``RunSpec.resources.gpu_class``) when ``kuberay.gpu_class`` is not configured.
GPU_CLASS_BY_FAMILY = {
    "p4d": "a100",
    "p4de": "a100",
    "p5": "h100",
    "p5e": "h200",
    "p5en": "h200",
    "p6-b200": "b200",
    "p6e-gb200": "gb200",
    "g5": "a10g",
    "g6": "l4",
    "g6e": "l40s",
}


def gpu_class_of(instance_type: str | None) -> str | None:
    """``ml.p5en.48xlarge`` -> ``h200``; None for unknown or non-GPU types."""
    parts = (instance_type or "").split(".")
    return GPU_CLASS_BY_FAMILY.get(parts[1]) if len(parts) == 3 and parts[0] == "ml" else None


class CapacityPlan(CapacityPlanRef):
    """What to do so that ``instance_group`` has ``required`` nodes, and how to undo it (the fields are the
    contract's ``CapacityPlanRef``, which the create task hands to the teardown)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @property
    def scaled_up(self) -> bool:
        return self.action == "scale" and (self.scale_to or 0) > self.original_count

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()


def _group(describe: dict[str, Any], name: str) -> dict[str, Any]:
    for group in describe.get("InstanceGroups") or []:
        if group.get("InstanceGroupName") == name:
            return dict(group)
    known = ", ".join(g.get("InstanceGroupName", "?") for g in describe.get("InstanceGroups") or [])
    raise CapacityError(
        f"HyperPod cluster {describe.get('ClusterName')} has no instance group {name!r} (has: {known or 'none'})"
    )


def autoscaling_managed(describe: dict[str, Any]) -> bool:
    """True when HyperPod manages node autoscaling itself (then the pipeline only waits)."""
    mode = str((describe.get("AutoScaling") or {}).get("Mode") or "")
    return mode.lower() == "enable"


def eks_cluster_arn(describe: dict[str, Any]) -> str | None:
    return ((describe.get("Orchestrator") or {}).get("Eks") or {}).get("ClusterArn")


def plan_capacity(describe: dict[str, Any], instance_group: str, required: int) -> CapacityPlan:
    """Decide from a ``describe_cluster`` answer: nothing to do, scale the group, or only wait.

    - enough nodes (current and target >= required): nothing;
    - HyperPod autoscaling on: never call ``update_cluster``, only wait;
    - a group on a training plan scales within its reservation (the API refuses more), and is not
      scaled down afterwards: the reserved nodes are paid for by the plan whether used or not.
    """
    if required < 1:
        raise CapacityError(f"required node count must be at least 1 (got {required})")
    status = describe.get("ClusterStatus")
    if status in ("Failed", "Deleting", "RollingBack"):
        raise CapacityError(f"HyperPod cluster {describe.get('ClusterName')} is {status}")
    group = _group(describe, instance_group)
    current = int(group.get("CurrentCount", 0))
    target = int(group.get("TargetCount", current))
    managed = autoscaling_managed(describe)
    if current >= required and target >= required:
        action: Action = "none"
        scale_to = None
    elif managed or target >= required:
        action, scale_to = "wait", None
    else:
        action, scale_to = "scale", required
    return CapacityPlan(
        cluster_name=str(describe.get("ClusterName")),
        instance_group=instance_group,
        required=required,
        current=current,
        target=target,
        action=action,
        scale_to=scale_to,
        original_count=target,
        training_plan_arn=group.get("TrainingPlanArn"),
        autoscaling_managed=managed,
        eks_cluster_arn=eks_cluster_arn(describe),
        instance_type=group.get("InstanceType"),
        gpu_class=gpu_class_of(group.get("InstanceType")),
    )


def update_request(describe: dict[str, Any], instance_group: str, count: int) -> dict[str, Any]:
    """The ``update_cluster`` arguments that set ``instance_group`` to ``count`` nodes.

    UpdateCluster takes the group's full specification, so it is copied from ``describe_cluster``.
    """
    group = _group(describe, instance_group)
    keep = (
        "InstanceGroupName", "InstanceType", "LifeCycleConfig", "ExecutionRole", "ThreadsPerCore",
        "InstanceStorageConfigs", "OnStartDeepHealthChecks", "TrainingPlanArn", "OverrideVpcConfig",
        "ScheduledUpdateConfig",
    )  # fmt: skip
    spec = {k: group[k] for k in keep if k in group and group[k] is not None}
    spec["InstanceCount"] = int(count)
    return {"ClusterName": describe["ClusterName"], "InstanceGroups": [spec]}


def release_count(plan: dict[str, Any] | None, baseline: int) -> int | None:
    """The count to scale back to at teardown, or None when this run must not scale down."""
    if plan is None:
        return None
    if plan.get("autoscaling_managed") or plan.get("training_plan_arn"):
        return None
    if plan.get("action") != "scale":
        return None
    return int(plan.get("original_count", baseline))


class CapacityRecord(BaseModel):
    """One DAG run's capacity decision: the document ``<run folder>/capacity.json``.

    Written before ``update_cluster`` scales the group up (intent first: a crash after the call still
    leaves the record), read by every later attempt and by the teardown, marked released when the group
    is back at ``count_before``.
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    cluster_name: str
    instance_group: str
    count_before: int = Field(ge=0, description="TargetCount before the run's first scale-up: the baseline")
    target: int = Field(ge=0, description="the count the run scaled to")
    scaled_by: str = Field(description="who scaled: dag_id/run_id/task_id and the try")
    scaled_at: datetime
    released_at: datetime | None = None
    released_by: str | None = None

    @property
    def outstanding(self) -> bool:
        return self.released_at is None

    def matches(self, cluster_name: str, instance_group: str) -> bool:
        return (self.cluster_name, self.instance_group) == (cluster_name, instance_group)


def record_scale_up(
    previous: CapacityRecord | None, plan: CapacityPlan, scaled_by: str, now: datetime
) -> CapacityRecord | None:
    """The record to write before carrying out ``plan``; None when the plan adds no nodes to give back.

    An outstanding record of the same group keeps its ``count_before``: the baseline is what the run found
    before its first scale-up, not what a later attempt found (the nodes an earlier attempt added).
    """
    if release_count(plan.as_dict(), plan.original_count) is None or not plan.scaled_up:
        return None
    before = plan.original_count
    if (
        previous is not None
        and previous.outstanding
        and previous.matches(plan.cluster_name, plan.instance_group)
    ):
        before = previous.count_before
    return CapacityRecord(
        cluster_name=plan.cluster_name, instance_group=plan.instance_group, count_before=before,
        target=int(plan.scale_to or plan.required), scaled_by=scaled_by, scaled_at=now,
    )  # fmt: skip


def release_target(
    plan: dict[str, Any] | None,
    record: CapacityRecord | None,
    cluster_name: str,
    instance_group: str,
    baseline: int,
) -> int | None:
    """The count to scale back to at teardown (or after a failed create), or None: leave the group as is.

    An outstanding record of this group wins (it survives retries; an XCom does not); else the plan."""
    if record is not None and record.outstanding and record.matches(cluster_name, instance_group):
        return record.count_before
    return release_count(plan, baseline)


def unhealthy_nodes(nodes: list[dict[str, Any]], instance_group: str) -> list[str]:
    """``"<instance id> (<status>: <message>)"`` for each node of the group not Running."""
    bad = []
    for node in nodes:
        if node.get("InstanceGroupName") != instance_group:
            continue
        status = node.get("InstanceStatus") or {}
        if status.get("Status") != "Running":
            bad.append(f"{node.get('InstanceId')} ({status.get('Status')}: {status.get('Message') or '-'})")
    return bad


def waiter_args(waiter_name: str, cluster_name: str, instance_group: str) -> dict[str, Any]:
    """The operation arguments of each HyperPod waiter."""
    if waiter_name == NODES_RUNNING_WAITER:
        return {"ClusterName": cluster_name, "InstanceGroupNameContains": instance_group}
    return {"ClusterName": cluster_name}
