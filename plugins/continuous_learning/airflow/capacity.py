"""HyperPod capacity for a DAG run: the instance group scaled up (and waited for), then released.

Make sure the HyperPod instance group has the nodes (scale up when short, wait deferrably until the
count is reached and the nodes are Running), and give them back at teardown. A scale-up is also recorded
in storage (``<run folder>/capacity.json``, a :class:`~continuous_learning.compute.hyperpod.CapacityRecord`)
before it is made: a retry starts with cleared XComs, and the record is what tells it, and the teardown,
the count to return to. The decisions are pure functions in ``compute/hyperpod.py``; this module calls
the hook and carries them out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from continuous_learning.airflow.context import run_identity, task_settings

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException

if TYPE_CHECKING:
    from continuous_learning.compute.hyperpod import CapacityRecord
    from continuous_learning.config import Settings

CAPACITY_XCOM = "capacity"
CAPACITY_RECORD = "capacity.json"


def capacity_record_uri(settings: Settings, context: Context) -> str:
    """Where the run's capacity decision is kept: ``capacity.json`` in the run's folder."""
    from continuous_learning import storage
    from continuous_learning.training import run_paths

    return storage.join(run_paths(settings, run_identity(context)).root, CAPACITY_RECORD)


def read_capacity_record(uri: str) -> CapacityRecord | None:
    from continuous_learning import storage
    from continuous_learning.compute.hyperpod import CapacityRecord

    return CapacityRecord.model_validate(storage.read_json(uri)) if storage.exists(uri) else None


def write_capacity_record(uri: str, record: CapacityRecord) -> None:
    from continuous_learning import storage

    storage.write_json(uri, record.model_dump(mode="json"))


def resolve_deferrable(op: Any, settings: Settings) -> None:
    """``deferrable=None`` (the default) means the ``kuberay.deferrable`` setting."""
    if op.deferrable is None:
        op.deferrable = settings.kuberay.deferrable


def _who(context: Context, task_id: str) -> str:
    try_number = getattr(context["ti"], "try_number", None)
    return f"{context['dag'].dag_id}/{context['run_id']}/{task_id}" + (
        f" try {try_number}" if try_number else ""
    )


def _pending_nodes(nodes: list[dict[str, Any]], instance_group: str) -> list[str]:
    """The group's nodes still on their way to Running (not Running, and not failed or shutting down)."""
    from continuous_learning.compute.hyperpod import UNHEALTHY_NODE_STATES

    return [
        str(node.get("InstanceId"))
        for node in nodes
        if node.get("InstanceGroupName") == instance_group
        and (node.get("InstanceStatus") or {}).get("Status") not in {"Running", *UNHEALTHY_NODE_STATES}
    ]


class HyperPodCapacityMixin(BaseOperator):
    """Shared by the operators that make sure a HyperPod instance group has its nodes.

    :meth:`ensure_capacity` scales and waits (deferring when ``deferrable``); once the nodes are there the
    operator goes on in :meth:`after_capacity`, right away or when resumed.
    """

    deferrable: bool | None

    def after_capacity(self, context: Context) -> Any:
        """The nodes are there: go on (the continuation of the capacity wait)."""
        raise NotImplementedError

    def _hyperpod_hook(self, settings: Settings) -> Any:
        from continuous_learning.airflow.hooks import SageMakerHyperPodHook

        return SageMakerHyperPodHook(
            aws_conn_id=settings.hyperpod.aws_conn_id, region_name=settings.hyperpod.region_name
        )

    def _capacity_trigger(self, settings: Settings, waiter_name: str) -> Any:
        from continuous_learning.airflow.triggers import HyperPodCapacityTrigger

        h = settings.hyperpod
        assert h.cluster_name is not None
        return HyperPodCapacityTrigger(
            cluster_name=h.cluster_name, instance_group=h.instance_group, waiter_name=waiter_name,
            waiter_delay=int(max(1, h.poll_interval_s)),
            waiter_max_attempts=max(1, int(h.capacity_timeout_s / h.poll_interval_s)),
            aws_conn_id=h.aws_conn_id, region_name=h.region_name,
        )  # fmt: skip

    def ensure_capacity(self, context: Context, settings: Settings, required: int) -> None:
        """Scale up when needed and wait (deferring, then resuming in :meth:`capacity_reached`)."""
        from continuous_learning.compute import hyperpod

        h = settings.hyperpod
        assert h.cluster_name is not None
        resolve_deferrable(self, settings)
        hook = self._hyperpod_hook(settings)
        try:
            plan = hyperpod.plan_capacity(hook.describe_cluster(h.cluster_name), h.instance_group, required)
        except hyperpod.CapacityError as exc:
            raise AirflowFailException(str(exc)) from None
        self.log.info(
            "HyperPod %s/%s: %d current, %d target, %d required -> %s%s", h.cluster_name, h.instance_group,
            plan.current, plan.target, required, plan.action,
            " (autoscaling managed by HyperPod)" if plan.autoscaling_managed else "",
        )  # fmt: skip
        record_uri = capacity_record_uri(settings, context)
        earlier = read_capacity_record(record_uri)
        if earlier is not None and earlier.outstanding:
            self.log.info("HyperPod capacity: %s scaled %s from %d to %d (%s): returned to %d at teardown",
                          earlier.scaled_by, earlier.instance_group, earlier.count_before, earlier.target,
                          record_uri, earlier.count_before)  # fmt: skip
        record = hyperpod.record_scale_up(earlier, plan, _who(context, self.task_id), datetime.now(UTC))
        if record is not None:  # intent first: a crash right after update_cluster still leaves the record
            write_capacity_record(record_uri, record)
        if plan.action == "scale" and plan.scale_to is not None:
            hook.set_instance_count(h.cluster_name, h.instance_group, plan.scale_to)
        context["ti"].xcom_push(key=CAPACITY_XCOM, value=plan.as_dict())
        if plan.action == "none":
            self._check_nodes(context, settings)
            return
        attempts = max(1, int(h.capacity_timeout_s / h.poll_interval_s))
        if self.deferrable:
            self.defer(
                trigger=self._capacity_trigger(settings, hyperpod.AT_TARGET_WAITER),
                method_name="capacity_reached",
            )
        try:
            hook.wait_for_capacity(h.cluster_name, h.instance_group, h.poll_interval_s, attempts)
        except hyperpod.CapacityError as exc:
            self._release_after_failure(context, settings)
            raise AirflowFailException(str(exc)) from None
        except Exception as exc:
            self._release_after_failure(context, settings)
            raise AirflowException(f"HyperPod capacity not reached: {exc}") from None

    def capacity_reached(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resumed after the count waiter: check the nodes are Running (or wait for them), go on."""
        from continuous_learning.compute import hyperpod

        settings = task_settings(context)
        h = settings.hyperpod
        assert h.cluster_name is not None
        if not event or event.get("status") != "success":
            message = (event or {}).get("message")
            self._release_after_failure(context, settings)
            raise AirflowException(f"HyperPod {h.cluster_name}/{h.instance_group}: {message}")
        nodes = self._hyperpod_hook(settings).list_cluster_nodes(h.cluster_name, h.instance_group)
        if _pending_nodes(nodes, h.instance_group) and self.deferrable:
            self.defer(
                trigger=self._capacity_trigger(settings, hyperpod.NODES_RUNNING_WAITER),
                method_name="nodes_running",
            )
        self._check_nodes(context, settings)
        return self.after_capacity(context)

    def nodes_running(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resumed after the nodes-running waiter: fail naming the nodes, or go on."""
        settings = task_settings(context)
        if not event or event.get("status") != "success":
            self._check_nodes(context, settings)  # raises the clear error naming the nodes
            self._release_after_failure(context, settings)
            raise AirflowException(f"HyperPod nodes not running: {(event or {}).get('message')}")
        self._check_nodes(context, settings)
        return self.after_capacity(context)

    def _check_nodes(self, context: Context, settings: Settings) -> None:
        from continuous_learning.compute import hyperpod

        h = settings.hyperpod
        assert h.cluster_name is not None
        try:
            self._hyperpod_hook(settings).check_nodes_healthy(h.cluster_name, h.instance_group)
        except hyperpod.CapacityError as exc:
            self._release_after_failure(context, settings)
            raise AirflowFailException(str(exc)) from None

    def capacity_plan(self, context: Context) -> dict[str, Any] | None:
        """This task's capacity plan (its XCom), if it made one."""
        plan = context["ti"].xcom_pull(task_ids=self.task_id, key=CAPACITY_XCOM)
        return plan if isinstance(plan, dict) else None

    def _release_after_failure(self, context: Context, settings: Settings) -> None:
        release_capacity(self, settings, self.capacity_plan(context), context)


def release_capacity(
    op: BaseOperator, settings: Settings, plan: dict[str, Any] | None, context: Context | None = None
) -> int | None:
    """Scale the instance group back to where this run found it (when it scaled it up). Idempotent.

    The run's :class:`CapacityRecord` (read with ``context``) wins over ``plan`` (an XCom, which a retry
    loses); once the group is back, the record is marked released.
    """
    from continuous_learning.airflow.hooks import SageMakerHyperPodHook
    from continuous_learning.compute import hyperpod

    h = settings.hyperpod
    if not h.cluster_name or not h.scale_down_at_teardown:
        return None
    record_uri = capacity_record_uri(settings, context) if context is not None else None
    record = read_capacity_record(record_uri) if record_uri else None
    outstanding = record is not None and record.outstanding and record.instance_group == h.instance_group
    if not outstanding and hyperpod.release_count(plan, h.baseline_instance_count) is None:
        op.log.info("HyperPod capacity: nothing to release (not scaled by this run, reserved, or autoscaled)")
        return None
    hook = SageMakerHyperPodHook(aws_conn_id=h.aws_conn_id, region_name=h.region_name)
    describe = hook.describe_cluster(h.cluster_name)
    count = hyperpod.release_target(
        plan, record, str(describe.get("ClusterName")), h.instance_group, h.baseline_instance_count
    )
    if count is None:
        op.log.info("HyperPod capacity: nothing to release (not scaled by this run, reserved, or autoscaled)")
        return None
    group: dict[str, Any] = next(
        (g for g in describe.get("InstanceGroups", []) if g.get("InstanceGroupName") == h.instance_group), {}
    )
    if int(group.get("TargetCount", -1)) == count:
        op.log.info("HyperPod %s/%s already at %d nodes", h.cluster_name, h.instance_group, count)
    else:
        hook.set_instance_count(h.cluster_name, h.instance_group, count)
        op.log.info("HyperPod %s/%s scaled back to %d nodes", h.cluster_name, h.instance_group, count)
    if outstanding and record is not None and record_uri is not None and context is not None:
        released = record.model_copy(
            update={"released_at": datetime.now(UTC), "released_by": _who(context, op.task_id)}
        )
        write_capacity_record(record_uri, released)
    return count


class EnsureHyperPodCapacityOperator(HyperPodCapacityMixin):
    """Make sure instance group ``instance_group`` of HyperPod cluster ``cluster_name`` has ``required`` nodes.

    Scales the group with ``update_cluster`` when it is short (never when HyperPod manages node
    autoscaling: then it only waits), waits until ``CurrentCount`` reaches ``TargetCount`` and the
    nodes are Running, and fails with the unhealthy nodes named. Returns the capacity plan, which
    :class:`ReleaseHyperPodCapacityOperator` takes to scale back down. Cluster, group and timeouts
    come from the ``hyperpod`` settings.

    :param required: nodes needed (templated; default: ``kuberay.worker_nodes``).
    :param deferrable: wait in the triggerer (default: the ``kuberay.deferrable`` setting).
    """

    template_fields: Sequence[str] = ("required",)
    ui_color = "#ffe8cc"

    def __init__(
        self, *, required: int | str | None = None, deferrable: bool | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.required = required
        self.deferrable = deferrable

    def execute(self, context: Context) -> dict[str, Any] | None:
        settings = task_settings(context)
        if not settings.hyperpod.cluster_name:
            self.log.info("no hyperpod.cluster_name configured: no capacity to ensure")
            return None
        required = int(self.required or settings.kuberay.worker_nodes)
        self.ensure_capacity(context, settings, required)
        return self.after_capacity(context)

    def after_capacity(self, context: Context) -> dict[str, Any] | None:
        return self.capacity_plan(context)


class ReleaseHyperPodCapacityOperator(BaseOperator):
    """Scale a HyperPod instance group back to its count before the run (a teardown task). Idempotent.

    :param plan: the :class:`EnsureHyperPodCapacityOperator`'s XCom (templated); nothing when empty.
    """

    template_fields: Sequence[str] = ("plan",)
    ui_color = "#ffe8cc"

    def __init__(self, *, plan: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan

    def execute(self, context: Context) -> None:
        release_capacity(self, task_settings(context), self.plan or None, context)
