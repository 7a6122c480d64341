"""Operators for the continuous-learning DAGs: thin adapters over the library's core.

Each operator does one job, reads its settings from the environment's configuration with DAG
Params as overrides, and returns a small JSON-able document for XCom.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import date
from typing import Any

from continuous_learning import storage
from continuous_learning.airflow.context import run_identity, task_settings, window_end
from continuous_learning.config import Settings
from continuous_learning.contracts import DatasetRef, EvalResult, RunSpec, TrainResult
from continuous_learning.registry import ModelRegistry

from airflow.sdk import BaseOperator, Context, ResumableJobMixin
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException


class IngestDayOperator(BaseOperator):
    """Validate, deduplicate, redact and curate one day of raw interaction logs.

    :param day: the day to ingest, ``YYYY-MM-DD`` (templated; default: the run's ``ds``).
    """

    template_fields: Sequence[str] = ("day",)
    ui_color = "#e8f4fd"

    def __init__(self, *, day: str = "{{ ds }}", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.day = day

    def execute(self, context: Context) -> dict[str, Any]:
        from continuous_learning.data.ingest import IngestError, ingest_day

        settings = task_settings(context)
        try:
            report = ingest_day(
                date.fromisoformat(self.day),
                raw_uri=settings.storage.raw_uri,
                out_uri=settings.storage.data_uri,
                feedback_uri=settings.storage.feedback_uri,
                max_record_bytes=settings.ingest.max_record_bytes,
                max_quarantine_share=settings.ingest.max_quarantine_share,
            )
        except IngestError as exc:
            raise AirflowFailException(str(exc)) from None
        if report.read == 0:
            self.log.info(
                "no raw records for %s under %s: wrote an empty partition", self.day, settings.storage.raw_uri
            )
        self.log.info(
            "read %d, accepted %d, duplicates %d, quarantined %d, redactions %s",
            report.read, report.accepted, report.duplicates, report.quarantined, report.redactions,
        )  # fmt: skip
        return report.as_dict()


class BuildRewardPartitionOperator(BaseOperator):
    """Turn one curated day into that day's VeRL-format reward partition.

    :param day: the day, ``YYYY-MM-DD`` (templated; default: ``ds``).
    """

    template_fields: Sequence[str] = ("day",)
    ui_color = "#e8f4fd"

    def __init__(self, *, day: str = "{{ ds }}", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.day = day

    def execute(self, context: Context) -> dict[str, Any]:
        from continuous_learning.data.reward_dataset import build_day_partition

        settings = task_settings(context)
        report = build_day_partition(
            settings.storage.data_uri,
            date.fromisoformat(self.day),
            settings.dataset.validation_share,
            settings.dataset.test_share,
        )
        self.log.info(
            "reward partition %s: %d prompts (%s); skipped %s",
            self.day,
            report.prompts,
            report.by_split,
            report.skipped,
        )
        return dict(report.__dict__)


class AssembleTrainingDatasetOperator(BaseOperator):
    """Union the reward partitions of the lookback window; skip the run when it is too small."""

    ui_color = "#fdf3e8"

    def execute(self, context: Context) -> dict[str, Any]:
        from continuous_learning.training import NotEnoughData, assemble_training_dataset

        settings = task_settings(context)
        end = window_end(context)
        try:
            ref = assemble_training_dataset(settings, end)
        except NotEnoughData as exc:
            raise AirflowSkipException(f"skipping training: {exc}") from None
        manifest = storage.read_json(ref.manifest_uri)
        self.log.info(
            "dataset %s: %s rows by split, window ending %s", ref.dataset_id, manifest["counts"], end
        )
        return {**ref.model_dump(), "counts": manifest["counts"], "window_end": end.isoformat()}


class _RayJobOperator(ResumableJobMixin, BaseOperator):
    """Base for operators that run a trainer command as a Ray job on the run's cluster.

    The cluster document (the create task's XCom) picks the backend:

    - ``local_ray``: a Ray job through the head's job API (:class:`RayJobRunner`);
    - ``kuberay``: a ray.io/v1 RayJob on that RayCluster (``clusterSelector``), or on its own
      ephemeral cluster with ``kuberay.ephemeral_job_cluster``. Its name and submission id derive
      from the DAG run and task plus an attempt number: a retry or a crashed worker finds the job
      by its labels (and through :class:`ResumableJobMixin`'s task state) and re-attaches; a new
      attempt is submitted only after a failed one. The wait is deferrable, streams the driver's
      log into the task log, and tells a startup timeout from a run timeout; a kill deletes the
      RayJob (KubeRay stops the Ray job).

    After the job succeeded, the subclass's ``then`` method reads the job's result.

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
        self._job: dict[str, Any] = {}
        self._external: dict[str, Any] | None = None

    def run_trainer(
        self, context: Context, settings: Settings, command: str, spec_uri: str,
        then: str | None = None, state: dict[str, Any] | None = None,
    ) -> Any:  # fmt: skip
        """Run ``command`` on ``spec_uri``; then return ``getattr(self, then)(context, state)``."""
        self._job = {"command": command, "spec_uri": spec_uri, "then": then, "state": state or {}}
        if self.cluster.get("backend") == "kuberay":
            if self.deferrable is None:
                self.deferrable = settings.kuberay.deferrable
            self._scale_resources(spec_uri)
            return self.execute_resumable(context)
        self._run_local(context, settings, command, spec_uri)
        return self._then(context, then, state or {})

    def _then(self, context: Context, then: str | None, state: dict[str, Any]) -> Any:
        return getattr(self, then)(context, state) if then else None

    def _run_local(self, context: Context, settings: Settings, command: str, spec_uri: str) -> None:
        from continuous_learning.compute.ray_jobs import RayJobError, RayJobRunner, submission_base
        from continuous_learning.training import job_environment, trainer_entrypoint

        runner = RayJobRunner(self.cluster["dashboard_url"])
        base = submission_base(context["dag"].dag_id, context["run_id"], self.task_id)
        try:
            outcome = runner.run(
                base,
                trainer_entrypoint(command, spec_uri),
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

    def _scale_resources(self, spec_uri: str) -> None:
        """Trainer nodes, GPUs per node and GPU class come from the cluster spec, not the trainer settings."""
        document = storage.read_json(spec_uri)
        if "resources" in document and "nnodes" in self.cluster:
            document["resources"].update(
                nnodes=int(self.cluster["nnodes"]),
                n_gpus_per_node=int(self.cluster["n_gpus_per_node"]),
                gpu_class=self.cluster.get("gpu_class"),
            )
            storage.write_json(spec_uri, document)

    # -- KubeRay: ResumableJobMixin -------------------------------------------------------------

    def _client(self) -> Any:
        from continuous_learning.airflow.hooks import KubeRayHook

        return KubeRayHook(**self.cluster["hook"]).kuberay()

    def submit_job(self, context: Context) -> dict[str, Any]:
        """Create the task's next RayJob attempt, or return the running/succeeded one (re-attach)."""
        from continuous_learning.compute import kuberay
        from continuous_learning.compute.ray_jobs import submission_base
        from continuous_learning.training import job_environment

        settings = task_settings(context)
        dag_id, run_id = context["dag"].dag_id, context["run_id"]
        namespace = self.cluster["namespace"]
        labels = kuberay.run_labels(dag_id, run_id, self.task_id)
        client = self._client()
        task_key = {f"{kuberay.LABEL_PREFIX}/task-key": labels[f"{kuberay.LABEL_PREFIX}/task-key"]}
        existing, attempt = kuberay.next_attempt(client.find(kuberay.RAYJOBS, namespace, task_key))
        if existing is not None:
            self._external = {
                "name": existing["metadata"]["name"],
                "submission_id": existing["spec"]["jobId"],
            }
            self.log.info(
                "re-attaching to RayJob %s (%s)", self._external["name"], kuberay.job_phase(existing)
            )
            return self._external
        name = f"{self.cluster['name']}-{kuberay.identity_key(self.task_id)[:6]}-a{attempt}"
        submission_id = f"{submission_base(dag_id, run_id, self.task_id)}-a{attempt}"
        k = settings.kuberay
        cluster_spec = None
        if k.ephemeral_job_cluster:
            cluster_spec = kuberay.cluster_spec_from_settings(
                settings, name, kuberay.run_labels(dag_id, run_id), job_environment(settings)
            )
        manifest = kuberay.render_rayjob(
            name=name, namespace=namespace,
            entrypoint=self.entrypoint(),
            job_id=submission_id, env=job_environment(settings),
            labels={**labels, f"{kuberay.LABEL_PREFIX}/attempt": str(attempt)},
            annotations={"continuous-learning.io/dag-id": dag_id, "continuous-learning.io/run-id": run_id},
            cluster_name=None if cluster_spec else self.cluster["name"], cluster_spec=cluster_spec,
            active_deadline_s=k.job_startup_timeout_s + settings.compute.job_timeout_s,
        )  # fmt: skip
        kuberay.validate_manifest(manifest)
        obj, created = client.create_or_get(kuberay.RAYJOBS, manifest)
        self._external = {"name": name, "submission_id": obj["spec"]["jobId"]}
        self.log.info("RayJob %s %s: %s", name, "submitted" if created else "exists: re-attached",
                      manifest["spec"]["entrypoint"])  # fmt: skip
        return self._external

    def entrypoint(self) -> str:
        """The job's command line: the trainer image's CLI on the spec document."""
        from continuous_learning.training import trainer_entrypoint

        return trainer_entrypoint(self._job["command"], self._job["spec_uri"])

    def get_job_status(self, external_id: Any, context: Context) -> str:
        from continuous_learning.compute import kuberay

        obj = self._client().get(kuberay.RAYJOBS, self.cluster["namespace"], external_id["name"])
        return "gone" if obj is None else kuberay.job_phase(obj)

    def is_job_active(self, status: str) -> bool:
        return status in ("pending", "running")

    def is_job_succeeded(self, status: str) -> bool:
        return status == "succeeded"

    def poll_until_complete(self, external_id: Any, context: Context) -> None:
        from continuous_learning.airflow.triggers import RayJobTrigger

        settings = task_settings(context)
        self._external = dict(external_id)
        trigger = RayJobTrigger(
            hook_kwargs=self.cluster["hook"], namespace=self.cluster["namespace"], name=external_id["name"],
            poll_s=settings.kuberay.poll_interval_s,
            cluster_name=None if settings.kuberay.ephemeral_job_cluster else self.cluster["name"],
            submission_id=external_id["submission_id"],
            startup_deadline=time.time() + settings.kuberay.job_startup_timeout_s,
            run_timeout_s=settings.compute.job_timeout_s,
        )  # fmt: skip
        if self.deferrable:
            # The job's plan travels in XCom, not in the deferral's kwargs: robust to how resumes pass them.
            context["ti"].xcom_push(key=JOB_PLAN_XCOM, value=self._job)
            self.defer(trigger=trigger, method_name="job_complete")
        event = asyncio.run(_first_event(trigger))
        self._raise_unless_succeeded(event)

    def get_job_result(self, external_id: Any, context: Context) -> Any:
        return self._then(context, self._job.get("then"), self._job.get("state") or {})

    def job_complete(
        self, context: Context, event: dict[str, Any] | None = None, job: dict[str, Any] | None = None
    ) -> Any:
        """Resumed from :class:`RayJobTrigger`: fail clearly, or read the job's result."""
        job = job or context["ti"].xcom_pull(task_ids=self.task_id, key=JOB_PLAN_XCOM) or {}
        event = event or {"status": "error", "message": "resumed without a trigger event"}
        self._job = job
        self._external = {"name": event.get("name"), "submission_id": event.get("submission_id")}
        self._raise_unless_succeeded(event)
        return self._then(context, job.get("then"), job.get("state") or {})

    def _raise_unless_succeeded(self, event: dict[str, Any]) -> None:
        from continuous_learning.compute import kuberay

        status = event.get("status")
        self.log.info("RayJob %s (%s): %s", event.get("name"), event.get("submission_id"), status)
        if status == "succeeded":
            return
        if status in ("startup_timeout", "run_timeout"):
            self._client().delete(kuberay.RAYJOBS, self.cluster["namespace"], str(event.get("name")))
            what = "did not start in time" if status == "startup_timeout" else "ran past its run timeout"
            raise AirflowException(f"RayJob {event.get('name')} {what} ({event.get('message')}); deleted it")
        tail = event.get("logs_tail") or ""
        raise AirflowException(
            f"RayJob {event.get('name')} ended {status}: {event.get('message')}. Last log lines:\n{tail}"
        )

    def on_kill(self) -> None:
        """Stop the job: delete the RayJob (KubeRay stops the Ray job); local: stop the Ray job."""
        if not self.cluster or self._external is None:
            return
        if self.cluster.get("backend") == "kuberay":
            from continuous_learning.compute import kuberay

            deleted = self._client().delete(
                kuberay.RAYJOBS, self.cluster["namespace"], self._external["name"]
            )
            self.log.info(
                "RayJob %s %s on kill", self._external["name"], "deleted" if deleted else "already gone"
            )


JOB_PLAN_XCOM = "ray_job_plan"


async def _first_event(trigger: Any) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AirflowException("the trigger ended without an event")


class EnsureBaseModelOperator(_RayJobOperator):
    """Return the base model; on the very first run (no ``production`` alias), onboard day 0's.

    Day 0 is the user's production model: ``model.base_uri`` is imported as ``v0`` by the trainer's
    ``import-model`` job (checked, fixed where safe, lineage recorded) and becomes production. Only the
    local demo's default ``builtin:tiny`` builds a model (tokenizer, tiny Qwen2, SFT warm start).
    """

    template_fields: Sequence[str] = ("cluster", "dataset")

    def __init__(self, *, dataset: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dataset = dataset

    def execute(self, context: Context) -> dict[str, Any]:
        from continuous_learning.training import write_bootstrap_spec, write_import_spec

        settings = task_settings(context)
        registry = ModelRegistry(settings.storage.registry_uri)
        production = registry.alias("production")
        if production is not None:
            return self._base(context, registry, production)
        run_id = run_identity(context)
        dataset = DatasetRef.model_validate(self._dataset_fields())
        if settings.model.base_uri == "builtin:tiny":
            spec_uri = write_bootstrap_spec(settings, dataset, run_id)
            return self.run_trainer(  # type: ignore[no-any-return]
                context, settings, "bootstrap", spec_uri, then="_bootstrapped", state={"spec_uri": spec_uri}
            )
        if settings.model.base_uri is None:
            raise AirflowFailException(
                "there is no production model and model.base_uri is not set: set [model] base_uri (or "
                "CL_MODEL__BASE_URI) to your production model in Hugging Face format (s3://..., file://...), "
                "or onboard it with `python -m continuous_learning register-model --uri ... --promote --reason ...`"
            )
        spec_uri = write_import_spec(settings, dataset, run_id)
        self.log.info("no production model yet: importing %s as the day-0 base", settings.model.base_uri)
        return self.run_trainer(  # type: ignore[no-any-return]
            context, settings, "import-model", spec_uri, then="_imported", state={"spec_uri": spec_uri}
        )

    def _imported(self, context: Context, state: dict[str, Any]) -> dict[str, Any]:
        from continuous_learning.contracts import ImportResult, ImportSpec
        from continuous_learning.models.onboarding import register_import

        settings = task_settings(context)
        registry = ModelRegistry(settings.storage.registry_uri)
        spec = ImportSpec.read(state["spec_uri"])
        result = ImportResult.read(storage.join(spec.output_uri.rsplit("/", 1)[0], "import.json"))
        dataset = DatasetRef.model_validate(self._dataset_fields())
        version, _ = register_import(
            registry, result, run_identity(context), dataset_id=dataset.dataset_id, spec_uri=state["spec_uri"],
            promote_reason=f"onboarded: day-0 base model from {spec.source_uri}",
        )  # fmt: skip
        lineage = result.lineage
        self.log.info(
            "registered %s as the first production model: %s, %s parameters (%s), tool calls %s, template %s; "
            "fixes: %s", version.version, lineage.architecture, f"{lineage.parameters:,}", lineage.dtype,
            lineage.tool_call_format, lineage.chat_template_source, "; ".join(lineage.fixes) or "none",
        )  # fmt: skip
        production = registry.alias("production")
        return self._base(context, registry, production)

    def _bootstrapped(self, context: Context, state: dict[str, Any]) -> dict[str, Any]:
        settings = task_settings(context)
        registry = ModelRegistry(settings.storage.registry_uri)
        production = registry.alias("production")
        if production is None:
            run_id = run_identity(context)
            dataset = DatasetRef.model_validate(self._dataset_fields())
            spec_uri = state["spec_uri"]
            spec = storage.read_json(spec_uri)
            version = registry.register(
                storage.join(spec["output_uri"], "model"), run_id, None, dataset.dataset_id,
                lineage={"kind": "bootstrap", "spec_uri": spec_uri, "dataset_manifest": dataset.manifest_uri,
                         "tool_call_format": "hermes"},
            )  # fmt: skip
            production = registry.promote(
                version.version, "bootstrap: day-0 base model", run_id, expected_revision=0
            )
            self.log.info("registered %s as the first production model", version.version)
        return self._base(context, registry, production)

    def _base(self, context: Context, registry: ModelRegistry, production: Any) -> dict[str, Any]:
        requested = (context.get("params") or {}).get("base_model_version") or "production"
        base_version = production.version if requested == "production" else requested
        base = registry.get(base_version)
        return {
            "version": base.version,
            "model_uri": base.model_uri,
            "production_revision": production.revision,
            "tool_call_format": base.lineage.get("tool_call_format", "hermes"),
        }

    def _dataset_fields(self) -> dict[str, Any]:
        return {k: self.dataset[k] for k in DatasetRef.model_fields}


class TrainCandidateOperator(_RayJobOperator):
    """Train a candidate from the base model on the window's dataset; register it as ``candidate``."""

    template_fields: Sequence[str] = ("cluster", "dataset", "base")

    def __init__(self, *, dataset: Any, base: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dataset = dataset
        self.base = base

    def execute(self, context: Context) -> dict[str, Any]:
        from continuous_learning.training import write_run_spec

        settings = task_settings(context)
        run_id = run_identity(context)
        dataset = DatasetRef.model_validate({k: self.dataset[k] for k in DatasetRef.model_fields})
        spec_uri = write_run_spec(
            settings, dataset, self.base["model_uri"], self.base["version"], run_id, self._tool_call_format()
        )
        if (context.get("params") or {}).get("dry_run"):
            self._dry_run(context, settings, dataset, spec_uri, run_id)
        return self.run_trainer(  # type: ignore[no-any-return]
            context, settings, "train", spec_uri, then="_trained", state={"spec_uri": spec_uri}
        )

    def _tool_call_format(self) -> Any:
        """The base model's family format (recorded at import), which the candidate shares."""
        return self.base.get("tool_call_format", "hermes")

    def _dry_run(
        self, context: Context, settings: Settings, dataset: DatasetRef, spec_uri: str, run_id: str
    ) -> None:
        """Dry run: write the evaluation spec too, then skip training, evaluation, gate and promotion."""
        from continuous_learning.airflow.notifications import record_run_note
        from continuous_learning.training import run_paths, write_eval_spec

        models = {"candidate": storage.join(run_paths(settings, run_id).train, "model"),
                  "production": self.base["model_uri"]}  # fmt: skip
        eval_spec_uri = write_eval_spec(settings, dataset, models, run_id, self._tool_call_format())
        note = (
            f"DRY RUN: dataset {dataset.dataset_id}, cluster and base model {self.base['version']} are ready and "
            f"the specs are written ({spec_uri}, {eval_spec_uri}); training, evaluation, gate and promotion "
            "were skipped on purpose (dry_run Param)."
        )
        record_run_note(context, note)
        raise AirflowSkipException(note)

    def _trained(self, context: Context, state: dict[str, Any]) -> dict[str, Any]:
        from continuous_learning.training import run_paths

        settings = task_settings(context)
        run_id = run_identity(context)
        dataset = DatasetRef.model_validate({k: self.dataset[k] for k in DatasetRef.model_fields})
        spec_uri = state["spec_uri"]
        result = TrainResult.read(storage.join(run_paths(settings, run_id).train, "result.json"))
        if result.status != "succeeded" or result.model_uri is None:
            raise RuntimeError(f"training run {run_id} did not succeed: {result.error}")
        registry = ModelRegistry(settings.storage.registry_uri)
        spec = RunSpec.read(spec_uri)
        lineage: dict[str, Any] = {
            "kind": spec.algorithm, "run_spec": spec_uri, "dataset_manifest": dataset.manifest_uri,
            "versions": result.versions, "tool_call_format": spec.tool_call_format,
            "base_model_uri": spec.base_model_uri,
        }  # fmt: skip
        if result.adapter_uri:
            lineage["lora"] = {"adapter_uri": result.adapter_uri, **spec.lora.model_dump()}
        version = registry.register(
            result.model_uri, run_id, self.base["version"], dataset.dataset_id, metrics=result.metrics,
            lineage=lineage,
        )  # fmt: skip
        registry.move_alias("candidate", version.version, f"trained by {run_id}", run_id)
        self.log.info("candidate %s: reward %.3f -> %.3f over %d steps", version.version,
                      result.metrics["reward_first"], result.metrics["reward_last"], result.steps)  # fmt: skip
        return {
            "version": version.version,
            "model_uri": result.model_uri,
            "adapter_uri": result.adapter_uri,
            "steps": result.steps,
            **result.metrics,
        }


class EvaluateCandidateOperator(_RayJobOperator):
    """Generate with candidate and base model on the held-out prompts and score both."""

    template_fields: Sequence[str] = ("cluster", "dataset", "base", "candidate")

    def __init__(self, *, dataset: Any, base: Any, candidate: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dataset = dataset
        self.base = base
        self.candidate = candidate

    def execute(self, context: Context) -> dict[str, Any]:
        from continuous_learning.training import write_eval_spec

        if (context.get("params") or {}).get("dry_run"):
            raise AirflowSkipException("DRY RUN: evaluation skipped on purpose (dry_run Param)")
        settings = task_settings(context)
        run_id = run_identity(context)
        dataset = DatasetRef.model_validate({k: self.dataset[k] for k in DatasetRef.model_fields})
        models = {"candidate": self.candidate["model_uri"], "production": self.base["model_uri"]}
        spec_uri = write_eval_spec(
            settings, dataset, models, run_id, self.base.get("tool_call_format", "hermes")
        )
        return self.run_trainer(context, settings, "evaluate", spec_uri, then="_evaluated")  # type: ignore[no-any-return]

    def _evaluated(self, context: Context, state: dict[str, Any]) -> dict[str, Any]:
        from continuous_learning.training import run_paths

        settings = task_settings(context)
        run_id = run_identity(context)
        result = EvalResult.read(storage.join(run_paths(settings, run_id).evaluation, "result.json"))
        self.log.info("mean reward: %s on %d prompts", result.mean_reward, result.prompts)
        return result.model_dump(mode="json")
