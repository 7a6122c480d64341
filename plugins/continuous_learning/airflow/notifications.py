"""Alerts on failures and gate rejections, through the Amazon provider's SNS notifier.

Configured in the ``alerts`` settings section (off by default; ``CL_ALERTS__ENABLED=true`` and
``CL_ALERTS__SNS_TOPIC_ARN=arn:aws:sns:...`` turn it on). The settings are read when the alert fires, not
when the DAG file is parsed, so a change needs no redeploy. A failing notifier is logged, never raised:
an alert must not turn a skip into a failure or hide the original error.

The Slack notifier is not used: its provider is not installed here. Subscribe a Slack/Chatbot, e-mail or
paging endpoint to the SNS topic instead.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from continuous_learning.config import AlertSettings

log = logging.getLogger(__name__)
SUBJECT_MAX = 100  # SNS limit


def _alert_settings() -> AlertSettings | None:
    from continuous_learning.config import ConfigError, load_settings

    try:
        return load_settings().alerts
    except ConfigError as exc:
        log.error("alerts: cannot read settings, no alert sent: %s", exc)
        return None


def _where(context: Any) -> dict[str, str]:
    ti = context.get("ti") or context.get("task_instance")
    dag = context.get("dag")
    return {
        "dag_id": str(getattr(dag, "dag_id", None) or getattr(ti, "dag_id", "?")),
        "run_id": str(context.get("run_id") or getattr(ti, "run_id", "?")),
        "task_id": str(getattr(ti, "task_id", None) or getattr(context.get("task"), "task_id", "?")),
        "try_number": str(getattr(ti, "try_number", "?")),
    }


def send_alert(kind: str, subject: str, message: str, context: Any = None) -> bool:
    """Publish one alert if alerts are on and ``kind`` (``failure`` / ``gate_rejection`` /
    ``approval_request``; ``feedback_drop`` is on with ``monitoring.enabled``) is enabled.

    Returns whether a notification was sent.
    """
    alerts = _alert_settings()
    if alerts is None or not alerts.enabled:
        log.info("alerts are off (alerts.enabled = false): not sending %r", subject)
        return False
    if not alerts.sns_topic_arn:
        log.warning("alerts.enabled is true but alerts.sns_topic_arn is empty: not sending %r", subject)
        return False
    if (
        (kind == "failure" and not alerts.on_failure)
        or (kind == "gate_rejection" and not alerts.on_gate_rejection)
        or (kind == "approval_request" and not alerts.on_approval_request)
    ):
        log.info("alerts for %s are off: not sending %r", kind, subject)
        return False
    from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

    full_subject = f"{alerts.subject_prefix} {subject}".strip().replace("\n", " ")[:SUBJECT_MAX]
    notifier = SnsNotifier(
        aws_conn_id=alerts.aws_conn_id,
        target_arn=alerts.sns_topic_arn,
        message=message,
        subject=full_subject,
        message_attributes={"kind": kind},
        region_name=alerts.region_name,
    )
    try:
        notifier.notify(context or {})
    except Exception:
        log.exception("alerts: publishing to %s failed", alerts.sns_topic_arn)
        return False
    log.info("alert sent to %s: %s", alerts.sns_topic_arn, full_subject)
    return True


def on_task_failure(context: Any) -> None:
    """``on_failure_callback`` for the DAGs' tasks: one SNS message per failed task (after its retries)."""
    where = _where(context)
    error = context.get("exception")
    message = "\n".join(
        [
            f"Task {where['task_id']} of DAG {where['dag_id']} failed (try {where['try_number']}).",
            f"Run: {where['run_id']}",
            f"Error: {error}" if error is not None else "Error: see the task log",
            "Handbook: docs/operations.md (what to do when a job hangs, a cluster is left behind, data is bad).",
        ]
    )
    send_alert("failure", f"FAILED {where['dag_id']}.{where['task_id']}", message, context)


def notify_gate_rejection(context: Any, candidate: str, reasons: str, report_url: str | None) -> bool:
    """Alert that the gate kept production: the candidate was not good enough (not a failure)."""
    where = _where(context)
    message = "\n".join(
        [
            f"The evaluation gate rejected candidate {candidate}; production is unchanged.",
            f"Run: {where['dag_id']} / {where['run_id']}",
            f"Why: {reasons}",
            f"Run report: {report_url or 'n/a'}",
            "A person may promote it anyway with a manual run (force_promote, typed confirmation, reason).",
        ]
    )
    return send_alert("gate_rejection", f"gate rejected {candidate} ({where['dag_id']})", message, context)


def notify_approval_request(
    context: Any, candidate: str, production: str | None, where_to_answer: str, deadline: str
) -> bool:
    """Tell the approvers that a promotion waits for them (not a failure)."""
    where = _where(context)
    message = "\n".join(
        [
            f"The gate would promote candidate {candidate} (production: {production or 'none'}); "
            "a person has to approve it first.",
            f"Run: {where['dag_id']} / {where['run_id']}",
            f"Answer (Approve / Reject): {where_to_answer}",
            f"No answer by {deadline}: the candidate is not promoted.",
        ]
    )
    return send_alert(
        "approval_request", f"approve {candidate} for production? ({where['dag_id']})", message, context
    )


RUN_NOTE_KEY = "run_note"


def record_run_note(context: Any, note: str) -> None:
    """Say why a run skipped or kept production, where an operator looks first.

    Airflow 3's Task SDK cannot set the DAG run's note (the execution API has no call for it; only a run
    created by ``TriggerDagRunOperator`` gets a note, at creation). So the note is logged on one line
    starting with ``RUN NOTE:`` and kept in XCom under ``run_note``; the task's skip message says the same.
    """
    log.warning("RUN NOTE: %s", note)
    ti = context.get("ti")
    if ti is not None:
        try:
            ti.xcom_push(key=RUN_NOTE_KEY, value=note)
        except Exception:
            log.exception("could not keep the run note in XCom")


def notify_feedback_drop(
    context: Any, version: str, previous_version: str, why: str, rollback_url: str
) -> bool:
    """Alert that production's live feedback dropped after its promotion, with the rollback to offer."""
    from continuous_learning.airflow.links import rollback_request

    where = _where(context)
    reason = (
        f"live feedback dropped after promoting {version} (alert from {where['dag_id']} / {where['run_id']})"
    )
    request = rollback_request(previous_version, reason)
    message = "\n".join(
        [
            f"Production model {version}: users' feedback dropped since it replaced {previous_version}.",
            f"Why: {why}",
            f"Roll back: {rollback_url} -> Trigger (target version 'previous' = {previous_version}; give a reason).",
            f"Or in one call: POST {request['url']} {json.dumps(request['json'])}",
            'Handbook: docs/operations.md, "Rollback".',
        ]
    )
    return send_alert(
        "feedback_drop", f"feedback drop: roll {version} back to {previous_version}?", message, context
    )
