"""The Ray job base: run a trainer command as a Ray job on the run's cluster, and read its result.

The cluster reference (the create task's XCom, a :data:`~continuous_learning.contracts.ClusterRef`) picks
the backend:

- ``local_ray``: a Ray job through the head's job API (:class:`~continuous_learning.compute.ray_jobs.RayJobRunner`);
- ``kuberay``: a ray.io/v1 RayJob on that RayCluster (``clusterSelector``), or on its own ephemeral
  cluster with ``kuberay.ephemeral_job_cluster``. Its name and submission id derive from the DAG run and
  task (and map index) plus an attempt number: a retry or a crashed worker finds the job by its labels
  (and through :class:`ResumableJobMixin`'s task state) and re-attaches; a new attempt is submitted only
  after a failed one. The wait is deferrable, streams the driver's log into the task log, and tells a
  startup timeout from a run timeout; a kill deletes the RayJob (KubeRay stops the Ray job).

Shaped like the providers' operators: a subclass's ``execute`` writes its spec and calls :meth:`run_job`;
the wait ends in :meth:`execute_complete` (after a deferral) or right away, and both go on in
:meth:`job_succeeded`, the subclass's continuation, which finds the job's spec and result by the run's
paths (nothing travels through XCom but the cluster reference).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from continuous_learning.airflow.context import task_settings

from airflow.sdk import BaseOperator, Context, ResumableJobMixin
from airflow.sdk.exceptions import AirflowException

if TYPE_CHECKING:
    from continuous_learning.config import Settings
    from continuous_learning.contracts import KubeRayClusterRef, LocalRayClusterRef


def map_index(context: Context) -> int | None:
    """The task instance's map index, or None for a task that is not mapped (Airflow's -1)."""
    index = getattr(context.get("ti"), "map_index", None)
    return index if isinstance(index, int) and index >= 0 else None


class BaseRayJobOperator(ResumableJobMixin, BaseOperator):
    """Base for operators that run a trainer command as a Ray job on the run's cluster.

    Subclasses write their spec in ``execute``, call :meth:`run_job`, and read the job's result in
    :meth:`job_succeeded`.

    :param cluster: the create task's XCom document (templated).
    :param deferrable: wait in the triggerer (default: the ``kuberay.deferrable`` setting).
    :param durable: persist the job's id in the task state to re-attach after a worker crash.
    """

    template_fields: Sequence[str] = ("cluster",)
    external_id_key = "ray_job"

    def __init__(self, *, cluster: Any, deferrable: bool | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cluster = cluster
        self.deferrable = deferrable
        self._command: str | None = None
        self._spec_uri: str | None = None
        self._external: dict[str, Any] | None = None

    # -- what a subclass implements ---------------------------------------------------------------------

    def job_succeeded(self, context: Context) -> Any:
        """The job succeeded: read its result and return the task's XCom document."""
        raise NotImplementedError

    # -- the life of the job ----------------------------------------------------------------------------

    @property
    def cluster_ref(self) -> LocalRayClusterRef | KubeRayClusterRef:
        from continuous_learning.contracts import read_cluster_ref

        return read_cluster_ref(self.cluster)

    def run_job(self, context: Context, settings: Settings, command: str, spec_uri: str) -> Any:
        """Run the trainer's ``command`` on ``spec_uri``; on success, return :meth:`job_succeeded`."""
        self._command, self._spec_uri = command, spec_uri
        ref = self.cluster_ref
        if ref.backend == "kuberay":
            if self.deferrable is None:
                self.deferrable = settings.kuberay.deferrable
            return self.execute_resumable(context)
        self._run_local(context, settings, ref)
        return self.job_succeeded(context)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resumed from :class:`~continuous_learning.airflow.triggers.RayJobTrigger`: fail clearly, or go on."""
        event = event or {"status": "error", "message": "resumed without a trigger event"}
        self._external = {"name": event.get("name"), "submission_id": event.get("submission_id")}
        self._raise_unless_succeeded(event)
        return self.job_succeeded(context)

    def entrypoint(self) -> str:
        """The job's command line: the trainer image's CLI on the spec document."""
        from continuous_learning.training import trainer_entrypoint

        assert self._command is not None and self._spec_uri is not None, "run_job sets the command"
        return trainer_entrypoint(self._command, self._spec_uri)

    def _run_local(self, context: Context, settings: Settings, ref: LocalRayClusterRef) -> None:
        from continuous_learning.compute.ray_jobs import RayJobError, RayJobRunner, submission_base
        from continuous_learning.training import job_environment

        runner = RayJobRunner(ref.dashboard_url)
        base = submission_base(context["dag"].dag_id, context["run_id"], self._task_part(context))
        try:
            outcome = runner.run(
                base,
                self.entrypoint(),
                job_environment(settings),
                timeout_s=settings.compute.job_timeout_s,
                on_log=lambda line: self.log.info("[ray job] %s", line),
            )
        except RayJobError as exc:
            raise RuntimeError(str(exc)) from None
        self.log.info(
            "Ray job %s %s%s",
            outcome.submission_id,
            outcome.status,
            " (re-attached)" if outcome.attached else "",
        )

    def _task_part(self, context: Context) -> str:
        """The task in names and ids: its id, and its map index when mapped (mapped tasks share the id)."""
        index = map_index(context)
        return self.task_id if index is None else f"{self.task_id}.{index}"

    # -- KubeRay: ResumableJobMixin ---------------------------------------------------------------------

    def _kuberay(self) -> KubeRayClusterRef:
        ref = self.cluster_ref
        assert ref.backend == "kuberay", f"not a KubeRay cluster: {ref.backend}"
        return ref

    def _client(self) -> Any:
        from continuous_learning.airflow.hooks import KubeRayHook

        return KubeRayHook(**self._kuberay().hook.model_dump()).kuberay()

    def submit_job(self, context: Context) -> dict[str, Any]:
        """Create the task's next RayJob attempt, or return the running/succeeded one (re-attach)."""
        from continuous_learning.compute import kuberay
        from continuous_learning.compute.ray_jobs import submission_base
        from continuous_learning.training import job_environment

        settings = task_settings(context)
        ref = self._kuberay()
        dag_id, run_id, index = context["dag"].dag_id, context["run_id"], map_index(context)
        labels = kuberay.run_labels(dag_id, run_id, self.task_id, index)
        client = self._client()
        task_key = {f"{kuberay.LABEL_PREFIX}/task-key": labels[f"{kuberay.LABEL_PREFIX}/task-key"]}
        existing, attempt = kuberay.next_attempt(client.find(kuberay.RAYJOBS, ref.namespace, task_key))
        if existing is not None:
            self._external = {
                "name": existing["metadata"]["name"],
                "submission_id": existing["spec"]["jobId"],
            }
            self.log.info(
                "re-attaching to RayJob %s (%s)", self._external["name"], kuberay.job_phase(existing)
            )
            return self._external
        task = self._task_part(context)
        name = f"{ref.name}-{kuberay.identity_key(task)[:6]}-a{attempt}"
        submission_id = f"{submission_base(dag_id, run_id, task)}-a{attempt}"
        k = settings.kuberay
        cluster_spec = None
        if k.ephemeral_job_cluster:
            cluster_spec = kuberay.cluster_spec_from_settings(
                settings, name, kuberay.run_labels(dag_id, run_id), job_environment(settings)
            )
        manifest = kuberay.render_rayjob(
            name=name, namespace=ref.namespace,
            entrypoint=self.entrypoint(),
            job_id=submission_id, env=job_environment(settings),
            labels={**labels, f"{kuberay.LABEL_PREFIX}/attempt": str(attempt)},
            annotations={"continuous-learning.io/dag-id": dag_id, "continuous-learning.io/run-id": run_id},
            cluster_name=None if cluster_spec else ref.name, cluster_spec=cluster_spec,
            active_deadline_s=k.job_startup_timeout_s + settings.compute.job_timeout_s,
        )  # fmt: skip
        kuberay.validate_manifest(manifest)
        obj, created = client.create_or_get(kuberay.RAYJOBS, manifest)
        self._external = {"name": name, "submission_id": obj["spec"]["jobId"]}
        self.log.info("RayJob %s %s: %s", name, "submitted" if created else "exists: re-attached",
                      manifest["spec"]["entrypoint"])  # fmt: skip
        return self._external

    def get_job_status(self, external_id: Any, context: Context) -> str:
        from continuous_learning.compute import kuberay

        obj = self._client().get(kuberay.RAYJOBS, self._kuberay().namespace, external_id["name"])
        return "gone" if obj is None else kuberay.job_phase(obj)

    def is_job_active(self, status: str) -> bool:
        return status in ("pending", "running")

    def is_job_succeeded(self, status: str) -> bool:
        return status == "succeeded"

    def poll_until_complete(self, external_id: Any, context: Context) -> None:
        from continuous_learning.airflow.triggers import RayJobTrigger

        settings = task_settings(context)
        ref = self._kuberay()
        self._external = dict(external_id)
        trigger = RayJobTrigger(
            hook_kwargs=ref.hook.model_dump(), namespace=ref.namespace, name=external_id["name"],
            poll_s=settings.kuberay.poll_interval_s,
            cluster_name=None if settings.kuberay.ephemeral_job_cluster else ref.name,
            submission_id=external_id["submission_id"],
            startup_deadline=time.time() + settings.kuberay.job_startup_timeout_s,
            run_timeout_s=settings.compute.job_timeout_s,
        )  # fmt: skip
        if self.deferrable:
            self.defer(trigger=trigger, method_name="execute_complete")
        event = asyncio.run(_first_event(trigger))
        self._raise_unless_succeeded(event)

    def get_job_result(self, external_id: Any, context: Context) -> Any:
        return self.job_succeeded(context)

    def _raise_unless_succeeded(self, event: dict[str, Any]) -> None:
        from continuous_learning.compute import kuberay

        status = event.get("status")
        self.log.info("RayJob %s (%s): %s", event.get("name"), event.get("submission_id"), status)
        if status == "succeeded":
            return
        if status in ("startup_timeout", "run_timeout"):
            self._client().delete(kuberay.RAYJOBS, self._kuberay().namespace, str(event.get("name")))
            what = "did not start in time" if status == "startup_timeout" else "ran past its run timeout"
            raise AirflowException(f"RayJob {event.get('name')} {what} ({event.get('message')}); deleted it")
        tail = event.get("logs_tail") or ""
        raise AirflowException(
            f"RayJob {event.get('name')} ended {status}: {event.get('message')}. Last log lines:\n{tail}"
        )

    def on_kill(self) -> None:
        """Stop the job: delete the RayJob (KubeRay stops the Ray job)."""
        if not self.cluster or self._external is None:
            return
        ref = self.cluster_ref
        if ref.backend == "kuberay":
            from continuous_learning.compute import kuberay

            deleted = self._client().delete(kuberay.RAYJOBS, ref.namespace, self._external["name"])
            self.log.info(
                "RayJob %s %s on kill", self._external["name"], "deleted" if deleted else "already gone"
            )


async def _first_event(trigger: Any) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AirflowException("the trigger ended without an event")
