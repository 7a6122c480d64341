"""Evaluation stage: candidate and base model scored on the held-out prompts (a trainer job), then the
statistical gate that decides whether the candidate may replace production, and the run report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from continuous_learning.airflow.context import run_identity, task_settings, window_end
from continuous_learning.airflow.links import REPORT_KEY, RunReportLink, report_url
from continuous_learning.airflow.ray_job import BaseRayJobOperator

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowSkipException


class EvaluateCandidateOperator(BaseRayJobOperator):
    """Generate with candidate and base model on the held-out prompts and score both.

    :param dataset: the dataset task's document (templated).
    :param base: the base-model task's document (templated).
    :param candidate: the training task's document (templated).
    """

    template_fields: Sequence[str] = ("cluster", "dataset", "base", "candidate")

    def __init__(self, *, dataset: Any, base: Any, candidate: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dataset = dataset
        self.base = base
        self.candidate = candidate

    def execute(self, context: Context) -> dict[str, Any]:
        from continuous_learning.contracts import DatasetRef
        from continuous_learning.training import write_eval_spec

        if (context.get("params") or {}).get("dry_run"):
            raise AirflowSkipException("DRY RUN: evaluation skipped on purpose (dry_run Param)")
        settings = task_settings(context)
        run_id = run_identity(context)
        dataset = DatasetRef.of(self.dataset)
        models = {"candidate": self.candidate["model_uri"], "production": self.base["model_uri"]}
        spec_uri = write_eval_spec(
            settings, dataset, models, run_id, self.base.get("tool_call_format", "hermes")
        )
        return self.run_job(context, settings, "evaluate", spec_uri)  # type: ignore[no-any-return]

    def job_succeeded(self, context: Context) -> dict[str, Any]:
        """The evaluation job succeeded: its result document is the task's XCom."""
        from continuous_learning.contracts import EvalResult, result_uri
        from continuous_learning.training import run_paths

        settings = task_settings(context)
        result = EvalResult.read(result_uri(run_paths(settings, run_identity(context)).evaluation))
        self.log.info("mean reward: %s on %d prompts", result.mean_reward, result.prompts)
        return result.model_dump(mode="json")


class EvaluationGateOperator(BaseOperator):
    """Decide from the paired scores whether the candidate may replace production; write the run report.

    :param evaluation: the evaluation task's result document (templated).
    :param dataset: the dataset document (templated), for the report.
    :param candidate: the training task's document (templated), for the report.
    :param base: the base-model document (templated), for the report.
    """

    template_fields: Sequence[str] = ("evaluation", "dataset", "candidate", "base")
    operator_extra_links = (RunReportLink(),)

    def __init__(
        self, *, evaluation: Any, dataset: Any = None, candidate: Any = None, base: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.evaluation = evaluation
        self.dataset = dataset
        self.candidate = candidate
        self.base = base

    def execute(self, context: Context) -> dict[str, Any]:
        from continuous_learning import storage
        from continuous_learning.contracts import result_uri
        from continuous_learning.evaluation.gate import GateConfig, decide
        from continuous_learning.evaluation.report import build_report
        from continuous_learning.training import run_paths

        settings = task_settings(context)
        e = settings.evaluation
        config = GateConfig(
            margin=e.margin, confidence=e.confidence, resamples=e.bootstrap_resamples, seed=e.seed
        )
        decision = decide(self.evaluation["scores_uri"], config)
        document = decision.as_dict()
        paths = run_paths(settings, run_identity(context))
        storage.write_json(paths.gate, document)
        train = storage.read_json(result_uri(paths.train)) if self.candidate else None
        manifest = storage.read_json(self.dataset["manifest_uri"]) if self.dataset else {}
        from continuous_learning.airflow.monitoring import check_live_feedback

        # Production's live feedback (an alert on a drop), shown in the report beside its offline score.
        live = check_live_feedback(context, settings, window_end(context))
        report = build_report(
            paths.root,
            dataset_manifest=manifest,
            train_result=train,
            eval_result=self.evaluation,
            decision=document,
            candidate_version=(self.candidate or {}).get("version"),
            production_version=(self.base or {}).get("version"),
            live_feedback=live,
        )
        result = {**document, "report": report}
        if live is not None:
            result["live_feedback"] = live
        if self.candidate:
            from continuous_learning.contracts import RunSpec
            from continuous_learning.tracking import record_gate

            spec = RunSpec.read(paths.spec("train"))
            if (url := record_gate(settings.tracking, spec, document, report)) is not None:
                result["tracking_url"] = url
                self.log.info("MLflow run: %s", url)
        context["ti"].xcom_push(key=REPORT_KEY, value=report_url(result))
        self.log.info("gate: %s. %s", "PROMOTE" if decision.promote else "REJECT", " ".join(decision.reasons))
        self.log.info("run report: %s", report["html"])
        return result
