"""Promotion and rollback operators: only better models reach production, and every move is recorded.

What ``promote`` does is decided by :func:`continuous_learning.promotion_policy.verdict` (no Airflow); the
operator carries it out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from continuous_learning.airflow.context import run_identity, task_settings
from continuous_learning.airflow.links import REPORT_KEY, RunReportLink, report_url

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException


def _sagemaker_client(aws_conn_id: str | None) -> Any:
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    return SageMakerHook(aws_conn_id=aws_conn_id).conn


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
        from continuous_learning.airflow.notifications import notify_gate_rejection, record_run_note
        from continuous_learning.promotion_policy import verdict

        params = context.get("params") or {}
        settings = task_settings(context, self.aws_conn_id)
        answer = verdict(
            self.decision, self.candidate, params,
            require_approval=settings.promotion.require_approval, approval=self.approval,
        )  # fmt: skip
        url = report_url(self.decision)
        if url and self.candidate and not params.get("dry_run"):
            context["ti"].xcom_push(key=REPORT_KEY, value=url)
        for note in answer.notes:
            record_run_note(context, note)
        if answer.run_note:
            record_run_note(context, answer.message)
        if answer.gate_rejected:
            notify_gate_rejection(
                context, self.candidate["version"], "; ".join(self.decision["reasons"]), url
            )
        if answer.action == "skip":
            raise AirflowSkipException(answer.message)
        if answer.action == "fail":
            raise AirflowFailException(answer.message)
        return self._promote(context, settings, answer.message)

    def _promote(self, context: Context, settings: Any, reason: str) -> dict[str, Any]:
        from continuous_learning.registry import ModelRegistry, RegistryError

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
                _sagemaker_client(self.aws_conn_id), group, version.version, version.model_uri,
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
        from continuous_learning.registry import ModelRegistry, RegistryError

        settings = task_settings(context, self.aws_conn_id)
        registry = ModelRegistry(settings.storage.registry_uri)
        try:
            moved = registry.rollback(self.target_version, self.reason, run_identity(context))
        except RegistryError as exc:
            raise AirflowFailException(str(exc)) from None
        group = settings.registry.sagemaker_model_package_group
        if group:
            from continuous_learning.sagemaker_registry import set_approval

            client = _sagemaker_client(self.aws_conn_id)
            if moved.previous_version:
                set_approval(client, group, moved.previous_version, False, f"rolled back: {self.reason}")
            set_approval(client, group, moved.version, True, f"restored by rollback: {self.reason}")
        self.log.info(
            "production rolled back from %s to %s: %s", moved.previous_version, moved.version, self.reason
        )
        return moved.model_dump(mode="json")
