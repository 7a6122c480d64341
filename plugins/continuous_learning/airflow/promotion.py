"""Promotion and rollback operators: only better models reach production, and every move is recorded.

What ``promote`` does is decided by :func:`continuous_learning.promotion_policy.verdict` (no Airflow); the
operator carries it out.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from continuous_learning.airflow.assets import PRODUCTION_MODEL
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
        """In an order a retry completes: (1) the SageMaker package, pending, found or created by version;
        (2) the alias, by compare-and-swap, or found already moved by this run (an earlier try failed
        after it); (3) the package approved; (4) the Asset event (emitted when the task succeeds). A try
        that loses the race rejects its pending package; the last try failing after the move moves the
        alias back, so registry, mirror and event never disagree."""
        from continuous_learning.registry import ModelRegistry, RegistryError

        registry = ModelRegistry(settings.storage.registry_uri)
        run_id = run_identity(context)
        version = registry.get(self.candidate["version"])
        expected = self.base["production_revision"]
        mirror = _Mirror.of(settings, self.aws_conn_id)
        arn = mirror.pending(version) if mirror else None
        prior_previous = registry.alias("previous")
        try:
            moved, resumed = registry.promote_or_resume(version.version, reason, run_id, expected)
        except RegistryError as exc:
            if mirror:
                with suppress(Exception):  # pending is not production either way
                    mirror.reject(version.version, f"not promoted: {exc}")
            raise AirflowFailException(str(exc)) from None
        if resumed:
            self.log.info("%s was made production by an earlier try (revision %d): completing", moved.version,
                          moved.revision)  # fmt: skip
        with _undone_on_last_try(context, self, registry, moved, prior_previous, run_id, mirror, True):
            if mirror:
                mirror.approve(version.version, reason)
        _announce(context, version, moved, arn)
        result = moved.model_dump(mode="json")
        if arn:
            result["sagemaker_model_package_arn"] = arn
        self.log.info("production is now %s (was %s)", moved.version, moved.previous_version)
        return result


def _undo(
    task: BaseOperator,
    registry: Any,
    moved: Any,
    prior_previous: Any,
    run_id: str,
    why: str,
    mirror: _Mirror | None,
    new_version: bool,
) -> None:
    """The last try failed after the alias moved: move it back (compare-and-swap on the revision this run
    made), and, best effort, the mirror's approvals with it (SageMaker may be what is failing)."""
    if moved.previous_version is None:
        task.log.error("%s could not complete (%s); no earlier production to restore", moved.version, why)
        return
    registry.move_alias("production", moved.previous_version,
                        f"undo: move to {moved.version} could not complete ({why})", run_id,
                        expected_revision=moved.revision)  # fmt: skip
    if prior_previous is not None:
        registry.move_alias("previous", prior_previous.version, f"undo of {moved.version}", run_id)
    if mirror:
        with suppress(Exception):
            mirror.approve(moved.previous_version, f"production again: undo of {moved.version}")
            if new_version:
                mirror.reject(moved.version, f"not promoted: {why}")
    task.log.error(
        "move to %s undone (production back to %s): %s", moved.version, moved.previous_version, why
    )


@contextmanager
def _undone_on_last_try(
    context: Context,
    task: BaseOperator,
    registry: Any,
    moved: Any,
    prior_previous: Any,
    run_id: str,
    mirror: _Mirror | None,
    new_version: bool,
) -> Iterator[None]:
    """What follows the alias move (promote's and rollback's): on the last try, an error in it undoes the
    move before it propagates; earlier tries leave the move for the retry to complete."""
    try:
        yield
    except Exception as exc:
        if _last_try(context, task):
            _undo(
                task,
                registry,
                moved,
                prior_previous,
                run_id,
                f"{type(exc).__name__}: {exc}",
                mirror,
                new_version,
            )
        raise


def _last_try(context: Context, task: BaseOperator) -> bool:
    return int(context["ti"].try_number) > int(task.retries or 0)


def _announce(context: Context, version: Any, moved: Any, arn: str | None) -> None:
    """The production-model Asset event's extra: what deploy_production deploys (a ProductionModelEvent)."""
    from continuous_learning.serving.handoff import event_for

    event = event_for(version, moved, arn).model_dump(mode="json")
    outlets = context.get("outlet_events")
    if outlets is not None:
        outlets[PRODUCTION_MODEL].extra = event
    context["ti"].xcom_push(key="production_model", value=event)


class _Mirror:
    """The SageMaker Model Registry mirror of the registry (``registry.sagemaker_model_package_group``)."""

    def __init__(self, client: Any, group: str, settings: Any) -> None:
        self.client, self.group, self.settings = client, group, settings

    @classmethod
    def of(cls, settings: Any, aws_conn_id: str | None) -> _Mirror | None:
        group = settings.registry.sagemaker_model_package_group
        return cls(_sagemaker_client(aws_conn_id), group, settings) if group else None

    def pending(self, version: Any) -> str:
        """The version's package, pending approval, with its inference specification when one is set."""
        from continuous_learning.sagemaker_registry import ensure_version
        from continuous_learning.serving.sagemaker import inference_specification

        spec = None
        if self.settings.serving.sagemaker.image and version.model_uri.startswith("s3://"):
            spec = inference_specification(self.settings.serving.sagemaker, version.model_uri)
        metadata = {"run_id": version.run_id, "dataset_id": version.dataset_id, "parent": version.parent_version,
                    **{f"metric.{k}": round(v, 6) for k, v in version.metrics.items()}}  # fmt: skip
        return ensure_version(self.client, self.group, version.version, version.model_uri, metadata, spec)

    def approve(self, version: str, reason: str) -> None:
        from continuous_learning.sagemaker_registry import set_approval

        set_approval(self.client, self.group, version, True, reason)

    def reject(self, version: str, reason: str) -> None:
        from continuous_learning.sagemaker_registry import set_approval

        set_approval(self.client, self.group, version, False, reason)


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
        """The alias first (compare-and-swap), then the mirror's approvals, then the Asset event; a retry
        finds the move this run made and completes it; the last try failing after the move undoes it."""
        from continuous_learning.registry import ModelRegistry, RegistryError

        settings = task_settings(context, self.aws_conn_id)
        registry = ModelRegistry(settings.storage.registry_uri)
        run_id = run_identity(context)
        prior_previous = registry.alias("previous")
        mine = registry.moved_by(run_id)
        if mine is not None and mine.reason.startswith("rollback:"):
            moved, _ = registry.promote_or_resume(mine.version, mine.reason, run_id, mine.revision - 1)
            self.log.info("rollback to %s was made by an earlier try (revision %d): completing", moved.version,
                          moved.revision)  # fmt: skip
        else:
            try:
                moved = registry.rollback(self.target_version, self.reason, run_id)
            except RegistryError as exc:
                raise AirflowFailException(str(exc)) from None
        version = registry.get(moved.version)
        mirror = _Mirror.of(settings, self.aws_conn_id)
        arn = None
        with _undone_on_last_try(context, self, registry, moved, prior_previous, run_id, mirror, False):
            if mirror:
                arn = mirror.pending(version)
                if moved.previous_version:
                    mirror.reject(moved.previous_version, f"rolled back: {self.reason}")
                mirror.approve(moved.version, f"restored by rollback: {self.reason}")
        _announce(context, version, moved, arn)
        self.log.info(
            "production rolled back from %s to %s: %s", moved.previous_version, moved.version, self.reason
        )
        return moved.model_dump(mode="json")
