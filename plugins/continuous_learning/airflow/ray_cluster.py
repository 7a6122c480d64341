"""Ray cluster life cycle for a DAG run: capacity, create (a setup task) and delete (a teardown task).

The backend comes from ``compute.backend``:

- ``local_ray``: a head on loopback in its own process group;
- ``kuberay``: make sure the HyperPod instance group has the nodes (scale up, wait deferrably),
  then a KubeRay RayCluster on them, created or re-attached by its run labels, waited for
  (deferrably) until ``.status.state`` is ``ready`` within ``compute.cluster_startup_timeout_s``.

The XCom document carries what the delete needs, so teardown works from any worker. A scale-up is
also recorded in storage (``<run folder>/capacity.json``, a :class:`~continuous_learning.compute.hyperpod.CapacityRecord`)
before it is made: a retry starts with cleared XComs, and the record is what tells it, and the teardown,
the count to return to. A create that fails after scaling up keeps the nodes for its retry; on its last
try it deletes what it made and releases the capacity itself (a teardown does not run when its setup
failed).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from continuous_learning.airflow.context import run_identity, task_settings
from continuous_learning.compute.hyperpod import CapacityRecord
from continuous_learning.config import Settings

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred

CAPACITY_XCOM = "capacity"
CAPACITY_RECORD = "capacity.json"


def capacity_record_uri(settings: Settings, context: Context) -> str:
    """Where the run's capacity decision is kept: ``capacity.json`` in the run's folder."""
    from continuous_learning import storage
    from continuous_learning.training import run_paths

    return storage.join(run_paths(settings, run_identity(context)).root, CAPACITY_RECORD)


def read_capacity_record(uri: str) -> CapacityRecord | None:
    from continuous_learning import storage

    return CapacityRecord.model_validate(storage.read_json(uri)) if storage.exists(uri) else None


def write_capacity_record(uri: str, record: CapacityRecord) -> None:
    from continuous_learning import storage

    storage.write_json(uri, record.model_dump(mode="json"))


def _who(context: Context, task_id: str) -> str:
    try_number = getattr(context["ti"], "try_number", None)
    return f"{context['dag'].dag_id}/{context['run_id']}/{task_id}" + (
        f" try {try_number}" if try_number else ""
    )


def _retry_follows(context: Context) -> bool:
    """Will Airflow run this task again after this failure? (Unknown: no, so nothing is left billed.)"""
    ti = context["ti"]
    try_number, max_tries = getattr(ti, "try_number", None), getattr(ti, "max_tries", None)
    if not isinstance(try_number, int) or not isinstance(max_tries, int):
        return False
    return try_number <= max_tries


def _resolve_deferrable(op: Any, settings: Settings) -> None:
    """``deferrable=None`` (the default) means the ``kuberay.deferrable`` setting."""
    if op.deferrable is None:
        op.deferrable = settings.kuberay.deferrable


def kuberay_hook_kwargs(settings: Settings, eks_cluster_arn: str | None = None) -> dict[str, Any]:
    """How to reach the Kubernetes API: the explicit connection, else the HyperPod cluster's EKS."""
    return {
        "kubernetes_conn_id": settings.kuberay.kubernetes_conn_id,
        "eks_cluster_name": None if settings.kuberay.kubernetes_conn_id
        else (settings.kuberay.eks_cluster_name or eks_cluster_arn),
        "aws_conn_id": settings.hyperpod.aws_conn_id,
        "region_name": settings.hyperpod.region_name,
        "retries": settings.kuberay.api_retries,
    }  # fmt: skip


class _CapacityMixin(BaseOperator):
    """Shared by the operators that make sure a HyperPod instance group has its nodes."""

    deferrable: bool | None
    after_capacity: str  # the method that goes on once the nodes are there

    def _hyperpod_hook(self, settings: Settings) -> Any:
        from continuous_learning.airflow.hooks import SageMakerHyperPodHook

        return SageMakerHyperPodHook(
            aws_conn_id=settings.hyperpod.aws_conn_id, region_name=settings.hyperpod.region_name
        )

    def _ensure_capacity(self, context: Context, settings: Settings, required: int, next_method: str) -> None:
        """Scale up when needed and wait (deferring, then resuming in ``next_method``)."""
        from continuous_learning.compute import hyperpod

        h = settings.hyperpod
        assert h.cluster_name is not None
        _resolve_deferrable(self, settings)
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
            from continuous_learning.airflow.triggers import HyperPodCapacityTrigger

            self.defer(
                trigger=HyperPodCapacityTrigger(
                    cluster_name=h.cluster_name, instance_group=h.instance_group,
                    waiter_name=hyperpod.AT_TARGET_WAITER, waiter_delay=int(max(1, h.poll_interval_s)),
                    waiter_max_attempts=attempts, aws_conn_id=h.aws_conn_id, region_name=h.region_name,
                ),
                method_name="capacity_reached",
            )  # fmt: skip
        try:
            hook.wait_for_capacity(h.cluster_name, h.instance_group, h.poll_interval_s, attempts)
        except hyperpod.CapacityError as exc:
            self._release_after_failure(context, settings)
            raise AirflowFailException(str(exc)) from None
        except Exception as exc:
            self._release_after_failure(context, settings)
            raise AirflowException(f"HyperPod capacity not reached: {exc}") from None

    def capacity_reached(
        self, context: Context, event: dict[str, Any] | None = None, next_method: str | None = None
    ) -> Any:
        """Resumed after the count waiter: check the nodes are Running (or wait for them), go on."""
        from continuous_learning.compute import hyperpod

        settings = task_settings(context)
        h = settings.hyperpod
        assert h.cluster_name is not None
        if not event or event.get("status") != "success":
            message = (event or {}).get("message")
            self._release_after_failure(context, settings)
            raise AirflowException(f"HyperPod {h.cluster_name}/{h.instance_group}: {message}")
        waiter = (event or {}).get("waiter_name")
        hook = self._hyperpod_hook(settings)
        bad = hyperpod.unhealthy_nodes(
            hook.list_cluster_nodes(h.cluster_name, h.instance_group), h.instance_group
        )
        pending = [b for b in bad if "Failure" not in b and "ShuttingDown" not in b]
        if pending and waiter != hyperpod.NODES_RUNNING_WAITER and self.deferrable:
            from continuous_learning.airflow.triggers import HyperPodCapacityTrigger

            self.defer(
                trigger=HyperPodCapacityTrigger(
                    cluster_name=h.cluster_name, instance_group=h.instance_group,
                    waiter_name=hyperpod.NODES_RUNNING_WAITER, waiter_delay=int(max(1, h.poll_interval_s)),
                    waiter_max_attempts=max(1, int(h.capacity_timeout_s / h.poll_interval_s)),
                    aws_conn_id=h.aws_conn_id, region_name=h.region_name,
                ),
                method_name="nodes_running",
            )  # fmt: skip
        self._check_nodes(context, settings)
        return getattr(self, next_method or self.after_capacity)(context)

    def nodes_running(
        self, context: Context, event: dict[str, Any] | None = None, next_method: str | None = None
    ) -> Any:
        settings = task_settings(context)
        if not event or event.get("status") != "success":
            self._check_nodes(context, settings)  # raises the clear error naming the nodes
            self._release_after_failure(context, settings)
            raise AirflowException(f"HyperPod nodes not running: {(event or {}).get('message')}")
        self._check_nodes(context, settings)
        return getattr(self, next_method or self.after_capacity)(context)

    def _check_nodes(self, context: Context, settings: Settings) -> None:
        from continuous_learning.compute import hyperpod

        h = settings.hyperpod
        assert h.cluster_name is not None
        try:
            self._hyperpod_hook(settings).check_nodes_healthy(h.cluster_name, h.instance_group)
        except hyperpod.CapacityError as exc:
            self._release_after_failure(context, settings)
            raise AirflowFailException(str(exc)) from None

    def _capacity_plan(self, context: Context) -> dict[str, Any] | None:
        plan = context["ti"].xcom_pull(task_ids=self.task_id, key=CAPACITY_XCOM)
        return plan if isinstance(plan, dict) else None

    def _release_after_failure(self, context: Context, settings: Settings) -> None:
        release_capacity(self, settings, self._capacity_plan(context), context)


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


class EnsureHyperPodCapacityOperator(_CapacityMixin):
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
    after_capacity = "done"

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
        self._ensure_capacity(context, settings, required, "done")
        return self.done(context)

    def done(self, context: Context) -> dict[str, Any] | None:
        return self._capacity_plan(context)


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


class CreateRayClusterOperator(_CapacityMixin):
    """Bring up the Ray cluster the run's jobs will use; returns its address document.

    With ``compute.backend = kuberay``: HyperPod capacity first (when ``hyperpod.cluster_name`` is
    set), then a RayCluster rendered from the ``kuberay`` settings, validated against the KubeRay
    CRD schema when the CRDs are available, created or re-attached by its run labels, and waited for
    until ready within ``compute.cluster_startup_timeout_s``; on timeout it is deleted.

    :param deferrable: wait in the triggerer (default: the ``kuberay.deferrable`` setting).
    :param poll_interval: seconds between status polls (default: ``kuberay.poll_interval_s``).
    """

    ui_color = "#fff1d6"
    after_capacity = "create_cluster"
    # (cluster document or None, context, settings) while creating: what on_kill must clean up
    _in_flight: tuple[dict[str, Any] | None, Context, Settings] | None = None

    def __init__(
        self, *, deferrable: bool | None = None, poll_interval: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.deferrable = deferrable
        self.poll_interval = poll_interval

    def execute(self, context: Context) -> dict[str, Any]:
        settings = task_settings(context)
        _resolve_deferrable(self, settings)
        if settings.compute.backend == "local_ray":
            return self._start_local(settings)
        if settings.hyperpod.cluster_name:
            self._in_flight = (None, context, settings)  # a kill now must release the capacity
            self._ensure_capacity(context, settings, settings.kuberay.worker_nodes, "create_cluster")
        return self.create_cluster(context)

    def _start_local(self, settings: Settings) -> dict[str, Any]:
        from continuous_learning.compute.local_ray import start_local_head
        from continuous_learning.training import job_environment

        head = start_local_head(
            settings.compute.local_ray_num_cpus,
            startup_timeout_s=settings.compute.cluster_startup_timeout_s,
            env=job_environment(settings),
        )
        self.log.info("Ray cluster ready: dashboard %s", head.dashboard_url)
        return {"backend": "local_ray", **head.as_dict()}

    def _document(self, context: Context, settings: Settings, name: str) -> dict[str, Any]:
        plan = self._capacity_plan(context)
        k = settings.kuberay
        return {
            "backend": "kuberay",
            "name": name,
            "namespace": k.namespace,
            "hook": kuberay_hook_kwargs(settings, (plan or {}).get("eks_cluster_arn")),
            "capacity": plan,
            "nnodes": k.worker_nodes,
            "n_gpus_per_node": k.gpus_per_node,
            # configured, else from the HyperPod instance type (the capacity step's describe_cluster)
            "gpu_class": k.gpu_class or (plan or {}).get("gpu_class"),
        }

    def create_cluster(self, context: Context) -> dict[str, Any]:
        """Create (or re-attach to) the RayCluster and wait for it; on a failure, keep the nodes for a retry,
        or, on the last try, delete the cluster and release the capacity (the teardown will not run)."""
        try:
            return self._create_cluster(context)
        except TaskDeferred:
            raise
        except Exception as exc:
            self._after_create_failure(context, exc)
            raise

    def _after_create_failure(self, context: Context, exc: Exception) -> None:
        from continuous_learning.airflow.hooks import KubeRayHook
        from continuous_learning.compute import kuberay

        settings = task_settings(context)
        if not isinstance(exc, AirflowFailException) and _retry_follows(context):
            record = (
                read_capacity_record(capacity_record_uri(settings, context))
                if settings.hyperpod.cluster_name
                else None
            )
            if record is not None and record.outstanding:
                self.log.warning(
                    "RayCluster creation failed (%s: %s); the HyperPod nodes stay for the retry: the scale-up "
                    "is recorded in %s, and the teardown returns the group to its count before the run",
                    type(exc).__name__, exc, capacity_record_uri(settings, context),
                )  # fmt: skip
            return
        name = kuberay.cluster_name_for(context["dag"].dag_id, context["run_id"])
        try:
            KubeRayHook(**self._document(context, settings, name)["hook"]).kuberay().delete(
                kuberay.RAYCLUSTERS, settings.kuberay.namespace, name
            )
        except Exception:  # the capacity matters more than a RayCluster that may not exist
            self.log.exception("could not delete RayCluster %s after the failed create", name)
        self._release_after_failure(context, settings)
        self.log.info("RayCluster creation failed on its last try: deleted %s, released the capacity", name)

    def _create_cluster(self, context: Context) -> dict[str, Any]:
        from continuous_learning.airflow.hooks import KubeRayHook
        from continuous_learning.compute import kuberay
        from continuous_learning.training import job_environment

        settings = task_settings(context)
        _resolve_deferrable(self, settings)
        dag_id, run_id = context["dag"].dag_id, context["run_id"]
        name = kuberay.cluster_name_for(dag_id, run_id)
        doc = self._document(context, settings, name)
        labels = kuberay.run_labels(dag_id, run_id)
        spec = kuberay.cluster_spec_from_settings(settings, name, labels, job_environment(settings))
        manifest = kuberay.render_raycluster(spec)
        manifest["metadata"]["annotations"].update({"continuous-learning.io/dag-id": dag_id,
                                                    "continuous-learning.io/run-id": run_id})  # fmt: skip
        kuberay.validate_manifest(manifest)
        client = KubeRayHook(**doc["hook"]).kuberay()
        self._in_flight = (doc, context, settings)  # what on_kill must clean up
        obj, created = client.create_or_get(kuberay.RAYCLUSTERS, manifest)
        self.log.info("RayCluster %s/%s %s (%d worker nodes x %d GPUs)", spec.namespace, name,
                      "created" if created else "exists: re-attached", spec.nnodes, spec.n_gpus_per_node)  # fmt: skip
        if kuberay.cluster_phase(obj) == "ready":
            return doc
        deadline = time.time() + settings.compute.cluster_startup_timeout_s
        poll = self.poll_interval or settings.kuberay.poll_interval_s
        if self.deferrable:
            from continuous_learning.airflow.triggers import RayClusterReadyTrigger

            self.defer(
                trigger=RayClusterReadyTrigger(
                    hook_kwargs=doc["hook"],
                    namespace=spec.namespace,
                    name=name,
                    poll_s=poll,
                    deadline=deadline,
                ),
                method_name="cluster_ready",
            )
        while time.time() < deadline:
            obj = client.get(kuberay.RAYCLUSTERS, spec.namespace, name) or {}
            phase = kuberay.cluster_phase(obj) if obj else "failed"
            if phase == "ready":
                return doc
            if phase == "failed":
                break
            time.sleep(poll)
        return self.cluster_ready(context, {"status": "timeout", "name": name})

    def cluster_ready(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        from continuous_learning.airflow.hooks import KubeRayHook
        from continuous_learning.compute import kuberay

        settings = task_settings(context)
        name = kuberay.cluster_name_for(context["dag"].dag_id, context["run_id"])
        doc = self._document(context, settings, name)
        if event and event.get("status") == "ready":
            self.log.info("RayCluster %s ready", name)
            return doc
        status = (event or {}).get("status")
        KubeRayHook(**doc["hook"]).kuberay().delete(kuberay.RAYCLUSTERS, doc["namespace"], name)
        self._release_after_failure(context, settings)
        if status == "timeout":
            raise AirflowException(
                f"RayCluster {name} not ready within {settings.compute.cluster_startup_timeout_s} s "
                f"({(event or {}).get('message')}); deleted it and released the capacity"
            )
        raise AirflowException(f"RayCluster {name} {status}: {(event or {}).get('message')}; cleaned up")

    def on_kill(self) -> None:
        """Killed while creating: the teardown task will not run (its setup failed), so clean up here."""
        in_flight = self._in_flight
        if in_flight is None:
            self.log.info("create_ray_cluster killed before creating anything")
            return
        from continuous_learning.airflow.hooks import KubeRayHook
        from continuous_learning.compute import kuberay

        doc, context, settings = in_flight
        name = doc["name"] if doc else None
        try:
            if doc is not None:
                KubeRayHook(**doc["hook"]).kuberay().delete(
                    kuberay.RAYCLUSTERS, doc["namespace"], doc["name"]
                )
            self._release_after_failure(context, settings)
            self.log.info(
                "create_ray_cluster killed: deleted RayCluster %s, released capacity", name or "(none yet)"
            )
        except Exception:  # on_kill must not raise; the next run's create re-attaches by labels
            self.log.exception(
                "cleanup after kill failed; check RayCluster %s and the instance group by hand", name
            )


class DeleteRayClusterOperator(BaseOperator):
    """Delete the run's Ray cluster and release its capacity, whatever happened before. Idempotent.

    With ``kuberay``, every RayCluster and RayJob labelled with this DAG run is deleted (not only the
    one in the document), then the HyperPod instance group goes back to its count before the run.

    :param cluster: the create task's XCom document (templated); nothing to do when it is empty.
    """

    template_fields: Sequence[str] = ("cluster",)
    ui_color = "#fff1d6"

    def __init__(self, *, cluster: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cluster = cluster

    def execute(self, context: Context) -> None:
        if not self.cluster:
            self.log.info("no cluster was created for this run: nothing to delete")
            release_capacity(self, task_settings(context), None, context)  # a recorded scale-up, if any
            return
        backend = self.cluster.get("backend")
        if backend == "local_ray":
            from continuous_learning.compute.local_ray import LocalRayHead, stop_local_head

            stopped = stop_local_head(LocalRayHead.from_dict(self.cluster))
            self.log.info("local Ray head stopped (%d processes)", stopped)
            return
        if backend == "kuberay":
            self._delete_kuberay(context)
            return
        raise AirflowFailException(f"unknown cluster backend in {self.cluster!r}")

    def _delete_kuberay(self, context: Context) -> None:
        from continuous_learning.airflow.hooks import KubeRayHook
        from continuous_learning.compute import kuberay

        settings = task_settings(context)
        client = KubeRayHook(**self.cluster["hook"]).kuberay()
        labels = kuberay.run_labels(context["dag"].dag_id, context["run_id"])
        key = {f"{kuberay.LABEL_PREFIX}/run-key": labels[f"{kuberay.LABEL_PREFIX}/run-key"]}
        namespace = self.cluster["namespace"]
        jobs = client.delete_matching(kuberay.RAYJOBS, namespace, key)
        clusters = client.delete_matching(kuberay.RAYCLUSTERS, namespace, key)
        if client.delete(kuberay.RAYCLUSTERS, namespace, self.cluster["name"]):
            clusters.append(self.cluster["name"])
        self.log.info("deleted RayJobs %s and RayClusters %s", jobs or "-", clusters or "-")
        release_capacity(self, settings, self.cluster.get("capacity"), context)
