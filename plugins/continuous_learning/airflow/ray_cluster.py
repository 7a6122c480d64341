"""Ray cluster life cycle for a DAG run: create (a setup task) and delete (a teardown task).

The backend comes from ``compute.backend``:

- ``local_ray``: a head on loopback in its own process group;
- ``kuberay``: HyperPod capacity first (:mod:`.capacity`), then a KubeRay RayCluster on those nodes,
  created or re-attached by its run labels, waited for (deferrably) until ``.status.state`` is ``ready``
  within ``compute.cluster_startup_timeout_s``.

The create task returns a :data:`~continuous_learning.contracts.ClusterRef` (its XCom): what the job
tasks and the delete need, so teardown works from any worker. A create that fails after scaling up keeps
the nodes for its retry; on its last try it deletes what it made and releases the capacity itself (a
teardown does not run when its setup failed).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from continuous_learning.airflow.capacity import (
    HyperPodCapacityMixin,
    capacity_record_uri,
    read_capacity_record,
    release_capacity,
    resolve_deferrable,
)
from continuous_learning.airflow.context import run_identity, task_settings

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred

if TYPE_CHECKING:
    from continuous_learning.config import Settings
    from continuous_learning.contracts import KubeRayClusterRef, KubeRayHookArgs


def _retry_follows(context: Context) -> bool:
    """Will Airflow run this task again after this failure? (Unknown: no, so nothing is left billed.)"""
    ti = context["ti"]
    try_number, max_tries = getattr(ti, "try_number", None), getattr(ti, "max_tries", None)
    if not isinstance(try_number, int) or not isinstance(max_tries, int):
        return False
    return try_number <= max_tries


def kuberay_hook_args(settings: Settings, eks_cluster_arn: str | None = None) -> KubeRayHookArgs:
    """How to reach the Kubernetes API: the explicit connection, else the HyperPod cluster's EKS."""
    from continuous_learning.contracts import KubeRayHookArgs

    return KubeRayHookArgs(
        kubernetes_conn_id=settings.kuberay.kubernetes_conn_id,
        eks_cluster_name=None if settings.kuberay.kubernetes_conn_id
        else (settings.kuberay.eks_cluster_name or eks_cluster_arn),
        aws_conn_id=settings.hyperpod.aws_conn_id,
        region_name=settings.hyperpod.region_name,
        retries=settings.kuberay.api_retries,
    )  # fmt: skip


def _client(ref: KubeRayClusterRef) -> Any:
    from continuous_learning.airflow.hooks import KubeRayHook

    return KubeRayHook(**ref.hook.model_dump()).kuberay()


class CreateRayClusterOperator(HyperPodCapacityMixin):
    """Bring up the Ray cluster the run's jobs will use; returns its :data:`~continuous_learning.contracts.ClusterRef`.

    With ``compute.backend = kuberay``: HyperPod capacity first (when ``hyperpod.cluster_name`` is
    set), then a RayCluster rendered from the ``kuberay`` settings, validated against the KubeRay
    CRD schema when the CRDs are available, created or re-attached by its run labels, and waited for
    until ready within ``compute.cluster_startup_timeout_s``; on timeout it is deleted.

    :param deferrable: wait in the triggerer (default: the ``kuberay.deferrable`` setting).
    :param poll_interval: seconds between status polls (default: ``kuberay.poll_interval_s``).
    """

    ui_color = "#fff1d6"
    # (cluster reference or None, context, settings) while creating: what on_kill must clean up
    _in_flight: tuple[KubeRayClusterRef | None, Context, Settings] | None = None

    def __init__(
        self, *, deferrable: bool | None = None, poll_interval: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.deferrable = deferrable
        self.poll_interval = poll_interval

    def execute(self, context: Context) -> dict[str, Any]:
        settings = task_settings(context)
        resolve_deferrable(self, settings)
        if settings.compute.backend == "local_ray":
            return self._start_local(settings)
        if settings.hyperpod.cluster_name:
            self._in_flight = (None, context, settings)  # a kill now must release the capacity
            self.ensure_capacity(context, settings, settings.kuberay.worker_nodes)
        return self.after_capacity(context)

    def _start_local(self, settings: Settings) -> dict[str, Any]:
        from continuous_learning.compute.local_ray import start_local_head
        from continuous_learning.contracts import LocalRayClusterRef
        from continuous_learning.training import job_environment

        head = start_local_head(
            settings.compute.local_ray_num_cpus,
            startup_timeout_s=settings.compute.cluster_startup_timeout_s,
            env=job_environment(settings),
        )
        self.log.info("Ray cluster ready: dashboard %s", head.dashboard_url)
        return LocalRayClusterRef(**head.as_dict()).model_dump(mode="json")

    def _reference(self, context: Context, settings: Settings, name: str) -> KubeRayClusterRef:
        from continuous_learning.contracts import CapacityPlanRef, KubeRayClusterRef

        plan = self.capacity_plan(context)
        k = settings.kuberay
        return KubeRayClusterRef(
            name=name,
            namespace=k.namespace,
            hook=kuberay_hook_args(settings, (plan or {}).get("eks_cluster_arn")),
            capacity=CapacityPlanRef.model_validate(plan) if plan else None,
            nnodes=k.worker_nodes,
            n_gpus_per_node=k.gpus_per_node,
            # configured, else from the HyperPod instance type (the capacity step's describe_cluster)
            gpu_class=k.gpu_class or (plan or {}).get("gpu_class"),
        )

    def after_capacity(self, context: Context) -> dict[str, Any]:
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
            _client(self._reference(context, settings, name)).delete(
                kuberay.RAYCLUSTERS, settings.kuberay.namespace, name
            )
        except Exception:  # the capacity matters more than a RayCluster that may not exist
            self.log.exception("could not delete RayCluster %s after the failed create", name)
        self._release_after_failure(context, settings)
        self.log.info("RayCluster creation failed on its last try: deleted %s, released the capacity", name)

    def _create_cluster(self, context: Context) -> dict[str, Any]:
        from continuous_learning.compute import kuberay
        from continuous_learning.training import job_environment

        settings = task_settings(context)
        resolve_deferrable(self, settings)
        dag_id, run_id = context["dag"].dag_id, context["run_id"]
        name = kuberay.cluster_name_for(dag_id, run_id)
        ref = self._reference(context, settings, name)
        labels = kuberay.run_labels(dag_id, run_id)
        spec = kuberay.cluster_spec_from_settings(settings, name, labels, job_environment(settings))
        manifest = kuberay.render_raycluster(spec)
        manifest["metadata"]["annotations"].update({"continuous-learning.io/dag-id": dag_id,
                                                    "continuous-learning.io/run-id": run_id})  # fmt: skip
        kuberay.validate_manifest(manifest)
        client = _client(ref)
        self._in_flight = (ref, context, settings)  # what on_kill must clean up
        obj, created = client.create_or_get(kuberay.RAYCLUSTERS, manifest)
        self.log.info("RayCluster %s/%s %s (%d worker nodes x %d GPUs)", spec.namespace, name,
                      "created" if created else "exists: re-attached", spec.nnodes, spec.n_gpus_per_node)  # fmt: skip
        if kuberay.cluster_phase(obj) == "ready":
            return ref.model_dump(mode="json")
        deadline = time.time() + settings.compute.cluster_startup_timeout_s
        poll = self.poll_interval or settings.kuberay.poll_interval_s
        if self.deferrable:
            from continuous_learning.airflow.triggers import RayClusterReadyTrigger

            self.defer(
                trigger=RayClusterReadyTrigger(
                    hook_kwargs=ref.hook.model_dump(),
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
                return ref.model_dump(mode="json")
            if phase == "failed":
                break
            time.sleep(poll)
        return self.cluster_ready(context, {"status": "timeout", "name": name})

    def cluster_ready(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resumed from :class:`~continuous_learning.airflow.triggers.RayClusterReadyTrigger`."""
        from continuous_learning.compute import kuberay

        settings = task_settings(context)
        name = kuberay.cluster_name_for(context["dag"].dag_id, context["run_id"])
        ref = self._reference(context, settings, name)
        if event and event.get("status") == "ready":
            self.log.info("RayCluster %s ready", name)
            return ref.model_dump(mode="json")
        status = (event or {}).get("status")
        _client(ref).delete(kuberay.RAYCLUSTERS, ref.namespace, name)
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
        from continuous_learning.compute import kuberay

        ref, context, settings = in_flight
        name = ref.name if ref else None
        try:
            if ref is not None:
                _client(ref).delete(kuberay.RAYCLUSTERS, ref.namespace, ref.name)
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
        from continuous_learning.contracts import ContractError, read_cluster_ref

        if not self.cluster:
            self.log.info("no cluster was created for this run: nothing to delete")
            release_capacity(self, task_settings(context), None, context)  # a recorded scale-up, if any
            return
        try:
            ref = read_cluster_ref(self.cluster)
        except ContractError as exc:
            raise AirflowFailException(f"unknown cluster backend in {self.cluster!r}: {exc}") from None
        if ref.backend == "local_ray":
            from continuous_learning.compute.local_ray import LocalRayHead, stop_local_head

            head = LocalRayHead.from_dict(ref.model_dump())
            self._keep_local_logs(context, head)
            stopped = stop_local_head(head)
            self.log.info("local Ray head stopped (%d processes)", stopped)
            return
        self._delete_kuberay(context, ref)

    def _keep_local_logs(self, context: Context, head: Any) -> None:
        """The head's Ray logs (the trainer's output among them) into ``runs/<run>/logs/ray/`` before the
        head and its temp dir go. A failure to copy is logged, never a reason to leave the head running."""
        from continuous_learning import storage
        from continuous_learning.compute.local_ray import keep_logs
        from continuous_learning.training import run_paths

        uri = storage.join(run_paths(task_settings(context), run_identity(context)).root, "logs", "ray")
        try:
            kept = keep_logs(head, uri)
        except (OSError, storage.StorageError):
            self.log.exception("could not keep the Ray logs in %s; stopping the head anyway", uri)
            return
        self.log.info("kept %d Ray log files in %s", len(kept), uri)

    def _delete_kuberay(self, context: Context, ref: KubeRayClusterRef) -> None:
        from continuous_learning.compute import kuberay

        settings = task_settings(context)
        client = _client(ref)
        labels = kuberay.run_labels(context["dag"].dag_id, context["run_id"])
        key = {f"{kuberay.LABEL_PREFIX}/run-key": labels[f"{kuberay.LABEL_PREFIX}/run-key"]}
        jobs = client.delete_matching(kuberay.RAYJOBS, ref.namespace, key)
        clusters = client.delete_matching(kuberay.RAYCLUSTERS, ref.namespace, key)
        if client.delete(kuberay.RAYCLUSTERS, ref.namespace, ref.name):
            clusters.append(ref.name)
        self.log.info("deleted RayJobs %s and RayClusters %s", jobs or "-", clusters or "-")
        release_capacity(self, settings, ref.capacity.model_dump() if ref.capacity else None, context)
