"""Operators for the continuous-learning DAGs: thin adapters over the library's core.

Each operator does one job, reads its settings from the environment's configuration with DAG
Params as overrides, and returns a small JSON-able document for XCom.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from continuous_learning import storage
from continuous_learning.airflow.context import run_identity, task_settings, window_end
from continuous_learning.config import Settings
from continuous_learning.contracts import DatasetRef, EvalResult, TrainResult
from continuous_learning.registry import ModelRegistry

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException


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


class _RayJobOperator(BaseOperator):
    """Base for operators that run a trainer command as a Ray job on the run's cluster."""

    template_fields: Sequence[str] = ("cluster",)

    def __init__(self, *, cluster: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cluster = cluster

    def run_trainer(self, context: Context, settings: Settings, command: str, spec_uri: str) -> None:
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


class EnsureBaseModelOperator(_RayJobOperator):
    """Return the production model; on the very first run, build and register it (day 0's base)."""

    template_fields: Sequence[str] = ("cluster", "dataset")

    def __init__(self, *, dataset: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dataset = dataset

    def execute(self, context: Context) -> dict[str, Any]:
        from continuous_learning.training import write_bootstrap_spec

        settings = task_settings(context)
        registry = ModelRegistry(settings.storage.registry_uri)
        requested = (context.get("params") or {}).get("base_model_version") or "production"
        production = registry.alias("production")
        if production is None:
            run_id = run_identity(context)
            dataset = DatasetRef.model_validate(self._dataset_fields())
            spec_uri = write_bootstrap_spec(settings, dataset, run_id)
            self.run_trainer(context, settings, "bootstrap", spec_uri)
            spec = storage.read_json(spec_uri)
            version = registry.register(
                storage.join(spec["output_uri"], "model"), run_id, None, dataset.dataset_id,
                lineage={"kind": "bootstrap", "spec_uri": spec_uri, "dataset_manifest": dataset.manifest_uri},
            )  # fmt: skip
            production = registry.promote(
                version.version, "bootstrap: day-0 base model", run_id, expected_revision=0
            )
            self.log.info("registered %s as the first production model", version.version)
        base_version = production.version if requested == "production" else requested
        base = registry.get(base_version)
        return {
            "version": base.version,
            "model_uri": base.model_uri,
            "production_revision": production.revision,
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
        from continuous_learning.training import run_paths, write_run_spec

        settings = task_settings(context)
        run_id = run_identity(context)
        dataset = DatasetRef.model_validate({k: self.dataset[k] for k in DatasetRef.model_fields})
        spec_uri = write_run_spec(settings, dataset, self.base["model_uri"], self.base["version"], run_id)
        self.run_trainer(context, settings, "train", spec_uri)
        result = TrainResult.read(storage.join(run_paths(settings, run_id).train, "result.json"))
        if result.status != "succeeded" or result.model_uri is None:
            raise RuntimeError(f"training run {run_id} did not succeed: {result.error}")
        registry = ModelRegistry(settings.storage.registry_uri)
        version = registry.register(
            result.model_uri, run_id, self.base["version"], dataset.dataset_id, metrics=result.metrics,
            lineage={"run_spec": spec_uri, "dataset_manifest": dataset.manifest_uri, "versions": result.versions},
        )  # fmt: skip
        registry.move_alias("candidate", version.version, f"trained by {run_id}", run_id)
        self.log.info("candidate %s: reward %.3f -> %.3f over %d steps", version.version,
                      result.metrics["reward_first"], result.metrics["reward_last"], result.steps)  # fmt: skip
        return {
            "version": version.version,
            "model_uri": result.model_uri,
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
        from continuous_learning.training import run_paths, write_eval_spec

        settings = task_settings(context)
        run_id = run_identity(context)
        dataset = DatasetRef.model_validate({k: self.dataset[k] for k in DatasetRef.model_fields})
        models = {"candidate": self.candidate["model_uri"], "production": self.base["model_uri"]}
        spec_uri = write_eval_spec(settings, dataset, models, run_id)
        self.run_trainer(context, settings, "evaluate", spec_uri)
        result = EvalResult.read(storage.join(run_paths(settings, run_id).evaluation, "result.json"))
        self.log.info("mean reward: %s on %d prompts", result.mean_reward, result.prompts)
        return result.model_dump(mode="json")


class EvaluationGateOperator(BaseOperator):
    """Decide from the paired scores whether the candidate may replace production; record why."""

    template_fields: Sequence[str] = ("evaluation",)

    def __init__(self, *, evaluation: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.evaluation = evaluation

    def execute(self, context: Context) -> dict[str, Any]:
        from continuous_learning.evaluation.gate import GateConfig, decide
        from continuous_learning.training import run_paths

        settings = task_settings(context)
        e = settings.evaluation
        config = GateConfig(
            margin=e.margin, confidence=e.confidence, resamples=e.bootstrap_resamples, seed=e.seed
        )
        decision = decide(self.evaluation["scores_uri"], config)
        document = decision.as_dict()
        storage.write_json(run_paths(settings, run_identity(context)).gate, document)
        self.log.info("gate: %s. %s", "PROMOTE" if decision.promote else "REJECT", " ".join(decision.reasons))
        return document


class PromoteModelOperator(BaseOperator):
    """Move ``production`` to the candidate when the gate said so (compare-and-swap on the alias)."""

    template_fields: Sequence[str] = ("decision", "candidate", "base")

    def __init__(self, *, decision: Any, candidate: Any, base: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.decision = decision
        self.candidate = candidate
        self.base = base

    def execute(self, context: Context) -> dict[str, Any]:
        from continuous_learning.registry import RegistryError

        params = context.get("params") or {}
        reasons = "; ".join(self.decision["reasons"])
        if params.get("skip_promotion"):
            raise AirflowSkipException(
                f"promotion skipped by the skip_promotion Param (gate said: {reasons})"
            )
        if not self.decision["promote"]:
            raise AirflowSkipException(f"gate rejected {self.candidate['version']}: {reasons}")
        settings = task_settings(context)
        registry = ModelRegistry(settings.storage.registry_uri)
        try:
            moved = registry.promote(
                self.candidate["version"], f"gate: {reasons}", run_identity(context),
                expected_revision=self.base["production_revision"],
            )  # fmt: skip
        except RegistryError as exc:
            raise AirflowFailException(str(exc)) from None
        self.log.info("production is now %s (was %s)", moved.version, moved.previous_version)
        return moved.model_dump(mode="json")
