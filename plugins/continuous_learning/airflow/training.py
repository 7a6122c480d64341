"""Training stage: the base model (day 0 onboarded on the first run) and the candidate trained from it.

Both run trainer jobs on the run's Ray cluster (:class:`~continuous_learning.airflow.ray_job.BaseRayJobOperator`)
and register what the job made in the model registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from continuous_learning.airflow.context import run_identity, task_settings
from continuous_learning.airflow.ray_job import BaseRayJobOperator

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

if TYPE_CHECKING:
    from continuous_learning.config import Settings
    from continuous_learning.contracts import DatasetRef
    from continuous_learning.registry import ModelRegistry

BUILTIN_TINY = "builtin:tiny"


class EnsureBaseModelOperator(BaseRayJobOperator):
    """Return the base model; on the very first run (no ``production`` alias), onboard day 0's.

    Day 0 is the user's production model: ``model.base_uri`` is imported as ``v0`` by the trainer's
    ``import-model`` job (checked, fixed where safe, lineage recorded) and becomes production. Only the
    local demo's default ``builtin:tiny`` builds a model (tokenizer, tiny Qwen2, SFT warm start).

    :param dataset: the dataset task's document (templated).
    """

    template_fields: Sequence[str] = ("cluster", "dataset")

    def __init__(self, *, dataset: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dataset = dataset

    def execute(self, context: Context) -> dict[str, Any]:
        from continuous_learning.contracts import DatasetRef
        from continuous_learning.registry import ModelRegistry
        from continuous_learning.training import write_bootstrap_spec, write_import_spec

        settings = task_settings(context)
        registry = ModelRegistry(settings.storage.registry_uri)
        production = registry.alias("production")
        if production is not None:
            return self._base(context, registry, production)
        run_id = run_identity(context)
        dataset = DatasetRef.of(self.dataset)
        if settings.model.base_uri == BUILTIN_TINY:
            return self.run_job(  # type: ignore[no-any-return]
                context, settings, "bootstrap", write_bootstrap_spec(settings, dataset, run_id)
            )
        if settings.model.base_uri is None:
            raise AirflowFailException(
                "there is no production model and model.base_uri is not set: set [model] base_uri (or "
                "CL_MODEL__BASE_URI) to your production model in Hugging Face format (s3://..., file://...), "
                "or onboard it with `python -m continuous_learning register-model --uri ... --promote --reason ...`"
            )
        spec_uri = write_import_spec(settings, dataset, run_id)
        self.log.info("no production model yet: importing %s as the day-0 base", settings.model.base_uri)
        return self.run_job(context, settings, "import-model", spec_uri)  # type: ignore[no-any-return]

    def job_succeeded(self, context: Context) -> dict[str, Any]:
        """The day-0 job succeeded: register its model as the first production model."""
        from continuous_learning.contracts import DatasetRef
        from continuous_learning.registry import ModelRegistry

        settings = task_settings(context)
        registry = ModelRegistry(settings.storage.registry_uri)
        dataset = DatasetRef.of(self.dataset)
        if settings.model.base_uri == BUILTIN_TINY:
            return self._bootstrapped(context, settings, registry, dataset)
        return self._imported(context, settings, registry, dataset)

    def _imported(
        self, context: Context, settings: Settings, registry: ModelRegistry, dataset: DatasetRef
    ) -> dict[str, Any]:
        from continuous_learning import storage
        from continuous_learning.contracts import ImportResult, ImportSpec
        from continuous_learning.models.onboarding import register_import
        from continuous_learning.training import run_paths

        spec_uri = run_paths(settings, run_identity(context)).spec("import")
        spec = ImportSpec.read(spec_uri)
        result = ImportResult.read(storage.join(spec.output_uri.rsplit("/", 1)[0], "import.json"))
        version, _ = register_import(
            registry, result, run_identity(context), dataset_id=dataset.dataset_id, spec_uri=spec_uri,
            promote_reason=f"onboarded: day-0 base model from {spec.source_uri}",
        )  # fmt: skip
        lineage = result.lineage
        self.log.info(
            "registered %s as the first production model: %s, %s parameters (%s), tool calls %s, template %s; "
            "fixes: %s", version.version, lineage.architecture, f"{lineage.parameters:,}", lineage.dtype,
            lineage.tool_call_format, lineage.chat_template_source, "; ".join(lineage.fixes) or "none",
        )  # fmt: skip
        return self._base(context, registry, registry.alias("production"))

    def _bootstrapped(
        self, context: Context, settings: Settings, registry: ModelRegistry, dataset: DatasetRef
    ) -> dict[str, Any]:
        from continuous_learning import storage
        from continuous_learning.training import run_paths

        production = registry.alias("production")
        if production is None:
            run_id = run_identity(context)
            spec_uri = run_paths(settings, run_id).spec("bootstrap")
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


class TrainCandidateOperator(BaseRayJobOperator):
    """Train a candidate from the base model on the window's dataset; register it as ``candidate``.

    :param dataset: the dataset task's document (templated).
    :param base: the base-model task's document (templated).
    """

    template_fields: Sequence[str] = ("cluster", "dataset", "base")

    def __init__(self, *, dataset: Any, base: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dataset = dataset
        self.base = base

    def execute(self, context: Context) -> dict[str, Any]:
        from continuous_learning.contracts import DatasetRef
        from continuous_learning.training import write_run_spec

        settings = task_settings(context)
        run_id = run_identity(context)
        dataset = DatasetRef.of(self.dataset)
        dry_run = bool((context.get("params") or {}).get("dry_run"))
        tracking = None if dry_run else self._tracking_run(settings, run_id, context)
        ref = self.cluster_ref
        spec_uri = write_run_spec(
            settings, dataset, self.base["model_uri"], self.base["version"], run_id, self._tool_call_format(),
            tracking=tracking, cluster_resources=ref.trainer_resources() if ref.backend == "kuberay" else None,
        )  # fmt: skip
        if dry_run:
            self._dry_run(context, settings, dataset, spec_uri, run_id)
        if tracking is not None:
            from continuous_learning.contracts import RunSpec
            from continuous_learning.tracking import log_run_spec

            log_run_spec(settings.tracking, RunSpec.read(spec_uri))
        return self.run_job(context, settings, "train", spec_uri)  # type: ignore[no-any-return]

    def _tracking_run(self, settings: Settings, run_id: str, context: Context) -> Any:
        """The run's MLflow run (a retry finds the one it started), or None when tracking is off."""
        from continuous_learning.tracking import start_training_run

        tags = {"cl.dag_id": self.dag_id, "cl.env": settings.env}
        tracking = start_training_run(settings.tracking, run_id, tags)
        if tracking is not None:
            self.log.info("MLflow run %s in experiment %s at %s", tracking.run_id, tracking.experiment,
                          tracking.tracking_uri)  # fmt: skip
        return tracking

    def _tool_call_format(self) -> Any:
        """The base model's family format (recorded at import), which the candidate shares."""
        return self.base.get("tool_call_format", "hermes")

    def _dry_run(
        self, context: Context, settings: Settings, dataset: DatasetRef, spec_uri: str, run_id: str
    ) -> None:
        """Dry run: write the evaluation spec too, then skip training, evaluation, gate and promotion."""
        from continuous_learning import storage
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

    def job_succeeded(self, context: Context) -> dict[str, Any]:
        """The training job succeeded: register the model and move the ``candidate`` alias to it."""
        from continuous_learning.airflow.notifications import record_run_note
        from continuous_learning.contracts import DatasetRef, RunSpec, TrainResult, result_uri
        from continuous_learning.registry import ModelRegistry
        from continuous_learning.training import run_paths

        settings = task_settings(context)
        run_id = run_identity(context)
        dataset = DatasetRef.of(self.dataset)
        spec_uri = run_paths(settings, run_id).spec("train")
        spec = RunSpec.read(spec_uri)
        result = TrainResult.read(result_uri(spec.output_uri))
        if result.status == "failed" or result.model_uri is None:
            raise RuntimeError(f"training run {run_id} did not succeed: {result.error or result.stop_reason}")
        if result.status == "stopped":
            # a time limit or a signal: its latest checkpoint, merged, is gated like any candidate
            self.log.warning("training run %s stopped early: %s", run_id, result.stop_reason)
            record_run_note(context, f"training stopped early: {result.stop_reason}")
        registry = ModelRegistry(settings.storage.registry_uri)
        lineage: dict[str, Any] = {
            "kind": spec.algorithm, "run_spec": spec_uri, "dataset_manifest": dataset.manifest_uri,
            "versions": result.versions, "tool_call_format": spec.tool_call_format,
            "base_model_uri": spec.base_model_uri, "status": result.status,
        }  # fmt: skip
        if result.adapter_uri:
            lineage["lora"] = {"adapter_uri": result.adapter_uri, **spec.lora.model_dump()}
        if spec.tracking is not None:
            lineage["mlflow_run_id"] = spec.tracking.run_id
        version = registry.register(
            result.model_uri, run_id, self.base["version"], dataset.dataset_id, metrics=result.metrics,
            lineage=lineage,
        )  # fmt: skip
        registry.move_alias("candidate", version.version, f"trained by {run_id}", run_id)
        if spec.tracking is not None:
            from continuous_learning.tracking import record_training

            if record_training(settings.tracking, spec, result.metrics, result.history, version=version.version,
                               status=result.status):  # fmt: skip
                self.log.warning("the trainer's logger sent no metrics to MLflow: logged its history instead")
        nan = float("nan")  # a run stopped early may not have logged both ends
        self.log.info("candidate %s: reward %.3f -> %.3f over %d steps", version.version,
                      result.metrics.get("reward_first", nan), result.metrics.get("reward_last", nan),
                      result.steps)  # fmt: skip
        return {
            "version": version.version,
            "model_uri": result.model_uri,
            "adapter_uri": result.adapter_uri,
            "steps": result.steps,
            **result.metrics,
        }
