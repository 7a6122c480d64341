"""Gate, promotion and rollback operators: only better models reach production, and every move is recorded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from continuous_learning import storage
from continuous_learning.airflow.context import run_identity, task_settings
from continuous_learning.config import Settings
from continuous_learning.registry import ModelRegistry, RegistryError

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom
from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

REPORT_KEY = "report_url"


class RunReportLink(BaseOperatorLink):
    """Link from the task to the run's HTML report."""

    name = "Run report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return str(XCom.get_value(key=REPORT_KEY, ti_key=ti_key) or "")


def _report_url(uri: str) -> str:
    if uri.startswith("s3://"):
        bucket, key = storage.S3Store.split(uri)
        return f"https://{bucket}.s3.amazonaws.com/{key}"
    return uri


def _sagemaker_client(settings: Settings, aws_conn_id: str | None) -> Any:
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    return SageMakerHook(aws_conn_id=aws_conn_id).conn


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
        train = storage.read_json(storage.join(paths.train, "result.json")) if self.candidate else None
        manifest = storage.read_json(self.dataset["manifest_uri"]) if self.dataset else {}
        report = build_report(
            paths.root,
            dataset_manifest=manifest,
            train_result=train,
            eval_result=self.evaluation,
            decision=document,
            candidate_version=(self.candidate or {}).get("version"),
            production_version=(self.base or {}).get("version"),
        )
        context["ti"].xcom_push(key=REPORT_KEY, value=_report_url(report["html"]))
        self.log.info("gate: %s. %s", "PROMOTE" if decision.promote else "REJECT", " ".join(decision.reasons))
        self.log.info("run report: %s", report["html"])
        return {**document, "report": report}


class PromoteModelOperator(BaseOperator):
    """Move ``production`` to the candidate when the gate said so (compare-and-swap on the alias).

    With ``registry.sagemaker_model_package_group`` set, the version is also registered, approved, in the
    SageMaker Model Registry. Give it ``outlets`` to announce the new production model to deployment DAGs.

    With ``promotion.require_approval`` (or the run's ``require_approval`` Param), it promotes only with an
    approval recorded by the approval task (``approval``); a rejection skips, saying who rejected and why.

    :param decision: the gate's document (templated); None when the gate did not run (nothing is promoted).
    :param candidate: the training task's document (templated).
    :param base: the base-model document (templated): holds the production revision the run started from.
    :param approval: the approval task's answer (templated); None when it was skipped.
    :param aws_conn_id: the AWS connection for S3 and SageMaker.
    """

    template_fields: Sequence[str] = ("decision", "candidate", "base", "approval")
    operator_extra_links = (RunReportLink(),)

    def __init__(
        self,
        *,
        decision: Any,
        candidate: Any,
        base: Any,
        approval: Any = None,
        aws_conn_id: str | None = "aws_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.decision = decision
        self.candidate = candidate
        self.base = base
        self.approval = approval
        self.aws_conn_id = aws_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        params = context.get("params") or {}
        from continuous_learning.airflow.notifications import notify_gate_rejection, record_run_note

        if params.get("dry_run"):
            raise AirflowSkipException("DRY RUN: promotion skipped on purpose (dry_run Param)")
        if not self.decision or not self.candidate:
            # Runs after a skipped approval task (trigger rule none_failed_min_one_success): make sure the
            # gate really ran.
            raise AirflowSkipException("no gate decision (the gate did not run): nothing to promote")
        reasons = "; ".join(self.decision["reasons"])
        report = (self.decision.get("report") or {}).get("html")
        if report:
            context["ti"].xcom_push(key=REPORT_KEY, value=_report_url(report))
        if params.get("skip_promotion"):
            note = f"promotion skipped by the skip_promotion Param (gate said: {reasons})"
            record_run_note(context, note)
            raise AirflowSkipException(note)
        reason = f"gate: {reasons}"
        if not self.decision["promote"]:
            if not params.get("force_promote"):
                note = f"gate rejected {self.candidate['version']}; production unchanged: {reasons}"
                record_run_note(context, note)
                notify_gate_rejection(
                    context, self.candidate["version"], reasons, report and _report_url(report)
                )
                raise AirflowSkipException(note)
            # Checked by validate_request; checked again here because this is the irreversible step.
            from continuous_learning.run_request import FORCE_PROMOTE_CONFIRMATION

            if params.get("force_promote_confirmation") != FORCE_PROMOTE_CONFIRMATION:
                raise AirflowFailException(
                    f"force_promote_confirmation: type {FORCE_PROMOTE_CONFIRMATION!r} to force a promotion"
                )
            reason = (
                f"FORCED despite gate rejection: {params.get('force_promote_reason')} (gate said: {reasons})"
            )
            record_run_note(context, f"{self.candidate['version']} force-promoted: {reason}")
        settings = task_settings(context, self.aws_conn_id)
        from continuous_learning.airflow.approval import approval_gate

        verdict, note = approval_gate(
            settings.promotion.require_approval, self.approval, self.candidate["version"]
        )
        if verdict == "fail":
            raise AirflowFailException(note)
        if verdict == "skip":
            record_run_note(context, note)
            raise AirflowSkipException(note)
        if note:
            reason = f"{reason} | {note}"
        registry = ModelRegistry(settings.storage.registry_uri)
        try:
            moved = registry.promote(
                self.candidate["version"], reason, run_identity(context),
                expected_revision=self.base["production_revision"],
            )  # fmt: skip
        except RegistryError as exc:
            raise AirflowFailException(str(exc)) from None
        result = moved.model_dump(mode="json")
        group = settings.registry.sagemaker_model_package_group
        if group:
            from continuous_learning.sagemaker_registry import register_version

            version = registry.get(moved.version)
            result["sagemaker_model_package_arn"] = register_version(
                _sagemaker_client(settings, self.aws_conn_id), group, version.version, version.model_uri,
                {"run_id": version.run_id, "dataset_id": version.dataset_id, "parent": version.parent_version,
                 **{f"metric.{k}": round(v, 6) for k, v in version.metrics.items()}},
            )  # fmt: skip
        self.log.info("production is now %s (was %s)", moved.version, moved.previous_version)
        return result


class RollbackModelOperator(BaseOperator):
    """Move ``production`` back to a version that was production before; recorded in the alias history.

    :param target_version: the version to restore (templated), e.g. ``v3``; ``previous`` means the alias.
    :param reason: why (templated); kept in the history.
    :param aws_conn_id: the AWS connection for S3 and SageMaker.
    """

    template_fields: Sequence[str] = ("target_version", "reason")

    def __init__(
        self, *, target_version: str, reason: str, aws_conn_id: str | None = "aws_default", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.target_version = target_version
        self.reason = reason
        self.aws_conn_id = aws_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        settings = task_settings(context, self.aws_conn_id)
        registry = ModelRegistry(settings.storage.registry_uri)
        try:
            moved = registry.rollback(self.target_version, self.reason, run_identity(context))
        except RegistryError as exc:
            raise AirflowFailException(str(exc)) from None
        group = settings.registry.sagemaker_model_package_group
        if group:
            from continuous_learning.sagemaker_registry import set_approval

            client = _sagemaker_client(settings, self.aws_conn_id)
            if moved.previous_version:
                set_approval(client, group, moved.previous_version, False, f"rolled back: {self.reason}")
            set_approval(client, group, moved.version, True, f"restored by rollback: {self.reason}")
        self.log.info(
            "production rolled back from %s to %s: %s", moved.previous_version, moved.version, self.reason
        )
        return moved.model_dump(mode="json")
