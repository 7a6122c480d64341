"""An optional human approval between the gate and the move of ``production`` (Airflow 3's HITL approval).

Off by default (``promotion.require_approval = false``): the schedule and the demo run unattended and
the ``approve_promotion`` task is skipped at once. On (the setting, ``CL_PROMOTION__REQUIRE_APPROVAL=true``,
or the ``require_approval`` Param of one run), a candidate the gate would promote waits for a person:

- the task writes a Human-in-the-loop request (subject, a Markdown body with candidate vs production,
  the run report's link) and parks in ``awaiting_input`` (no worker slot, no trigger);
- a person answers in the UI (*Required actions*, or the task's page) or through the REST API
  (``PATCH /api/v2/dags/<dag>/dagRuns/<run>/taskInstances/approve_promotion/-1/hitlDetails``);
- **Approve**: ``promote`` moves ``production``; the approver and their comment go into the alias history.
  **Reject**: ``promote`` skips, saying who rejected and why; production is unchanged.
- no answer within ``promotion.approval_timeout_hours``: the scheduler ends the wait, this task fails
  (no retry) saying so, and nothing is promoted (fail closed).

Every answer is kept in ``runs/<run>/approval.json`` and in the task's XCom. ``promote`` checks the
answer again before it moves anything: an approval required but not recorded is not a promotion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from continuous_learning.airflow.context import run_identity, task_settings
from continuous_learning.airflow.links import REPORT_KEY, report_url
from continuous_learning.promotion_policy import approval_requirement, describe_outcome

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk import Context, Param
from airflow.sdk.definitions.param import ParamsDict
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

APPROVE = ApprovalOperator.APPROVE
REJECT = ApprovalOperator.REJECT
COMMENT_PARAM = "comment"


# -- documents (plain data in, plain data out; the policy is continuous_learning.promotion_policy) ----------


def approval_outcome(payload: Mapping[str, Any], candidate: str, production: str | None) -> dict[str, Any]:
    """The recorded answer: approved or not, by whom, when, with the approver's comment."""
    chosen = list(payload.get("chosen_options") or [])
    comment = (payload.get("params_input") or {}).get(COMMENT_PARAM)
    responded_at = payload.get("responded_at")
    return {
        "required": True,
        "approved": chosen == [APPROVE],
        "chosen_options": chosen,
        "candidate": candidate,
        "production": production,
        "responded_by": dict(payload.get("responded_by_user") or {}) or None,
        "responded_at": responded_at.isoformat() if isinstance(responded_at, datetime) else responded_at,
        "comment": (str(comment).strip() or None) if comment is not None else None,
        "timed_out": False,
    }


def _fmt(value: Any, pattern: str = "{:.3f}") -> str:
    return pattern.format(value) if isinstance(value, int | float) else "n/a"


def approval_body(
    decision: Mapping[str, Any],
    candidate: Mapping[str, Any],
    base: Mapping[str, Any],
    *,
    confidence: float,
    report_url: str | None,
    timeout_hours: float,
    deadline: str,
    forced_reason: str | None = None,
) -> str:
    """The Markdown an approver reads: candidate vs production on the same prompts, the gate's verdict,
    the run report, and what each answer does."""
    new, old = candidate.get("version", "?"), base.get("version", "?")
    overall = decision.get("overall") or {}
    guard = decision.get("guardrails") or {}
    lines = [
        f"**Candidate {new}** against **production {old}** on {overall.get('n', '?')} held-out prompts "
        "(paired: both models answered the same prompts, scored by the same rewards).",
        "",
        f"| | candidate {new} | production {old} |",
        "|---|---|---|",
        f"| mean reward | {_fmt(decision.get('candidate_mean'))} | {_fmt(decision.get('production_mean'))} |",
    ]
    if "tool_call_validity_candidate" in guard:
        lines.append(
            f"| tool-call validity | {_fmt(guard.get('tool_call_validity_candidate'), '{:.1%}')} "
            f"| {_fmt(guard.get('tool_call_validity_production'), '{:.1%}')} |"
        )
    if "refusal_rate_candidate" in guard:
        lines.append(
            f"| refusal rate | {_fmt(guard.get('refusal_rate_candidate'), '{:.1%}')} "
            f"| {_fmt(guard.get('refusal_rate_production'), '{:.1%}')} |"
        )
    # Markdown: a single newline does not break a paragraph, so every item below is a list item.
    lines.append("")
    if overall:
        length = guard.get("response_length_ratio")
        lines.append(
            f"- Difference (candidate - production): **{_fmt(overall.get('mean'), '{:+.4f}')}**, "
            f"{confidence:.0%} CI {_fmt(overall.get('low'), '{:+.4f}')}..{_fmt(overall.get('high'), '{:+.4f}')}"
            + (f"; response length ratio {_fmt(length, '{:.2f}')}x" if length is not None else "")
        )
    slices = decision.get("slices") or {}
    if slices:
        parts = [
            f"{name} {_fmt(s.get('mean'), '{:+.3f}')} ({_fmt(s.get('low'), '{:+.3f}')}..{_fmt(s.get('high'), '{:+.3f}')})"
            for name, s in sorted(slices.items())
        ]
        lines.append("- Per slice: " + "; ".join(parts))
    verdict = "PROMOTE" if decision.get("promote") else "REJECT"
    lines.append(f"- Gate: **{verdict}**: {' '.join(decision.get('reasons') or [])}")
    if forced_reason:
        lines.append(f"- **Forced promotion requested despite the gate**: {forced_reason}")
    lines.append(f"- Run report: [{report_url}]({report_url})" if report_url else "- Run report: not written")
    if candidate.get("dataset_id"):
        lines.append(f"- Dataset: `{candidate['dataset_id']}`")
    lines += [
        "",
        f"- **Approve**: production moves from {old} to {new} (compare-and-swap; {old} becomes `previous`).",
        f"- **Reject**: production stays {old}. Add a comment: it is kept with the decision.",
        f"- No answer by {deadline} ({timeout_hours:g} h): {new} is **not** promoted.",
    ]
    return "\n".join(lines)


def _record(context: Context, settings: Any, outcome: Mapping[str, Any]) -> str:
    from continuous_learning import storage
    from continuous_learning.training import run_paths

    uri = storage.join(run_paths(settings, run_identity(context)).root, "approval.json")
    storage.write_json(uri, dict(outcome))
    return uri


# -- the operator ------------------------------------------------------------------------------------------


class PromotionApprovalOperator(ApprovalOperator):
    """Ask a person to approve the candidate before ``promote`` moves ``production`` (HITL approval).

    Skipped at once, without waiting, when approval is not required (``promotion.require_approval`` off
    and the run's ``require_approval`` Param not set), for a dry run or ``skip_promotion``, and when the
    gate rejected the candidate (unless a forced promotion is requested). Otherwise it writes a
    Human-in-the-loop request and waits at most ``promotion.approval_timeout_hours``.

    Returns (XCom) the recorded answer, also written to ``runs/<run>/approval.json``:
    ``{"required", "approved", "candidate", "production", "responded_by", "responded_at", "comment", ...}``.
    A rejection does not skip anything itself: ``promote`` reads the answer and skips, saying why.
    No answer in time fails this task without retry, so ``promote`` does not run.

    :param decision: the gate's document (templated).
    :param candidate: the training task's document (templated).
    :param base: the base-model document (templated).
    """

    template_fields: Sequence[str] = ("subject", "body", "decision", "candidate", "base")
    ui_color = "#fff4d6"

    def __init__(self, *, decision: Any, candidate: Any, base: Any, **kwargs: Any) -> None:
        kwargs.setdefault("retries", 0)  # a second request after a timeout would wait again
        kwargs.setdefault("subject", "Promote the candidate to production?")
        # Airflow hands __init__ the DAG's Params merged into ``params``; HITLOperator keeps only the
        # task-level ones (source "task"): the approver's form holds just the comment.
        params = kwargs.pop("params", None)
        params = params if isinstance(params, ParamsDict) else ParamsDict(params or {})
        if COMMENT_PARAM not in params:
            params[COMMENT_PARAM] = Param(
                None,
                type=["null", "string"],
                maxLength=1000,
                title="Comment",
                description="Why you approve or reject; kept with the decision (and in the alias history).",
                source="task",
            )
        kwargs["params"] = params
        super().__init__(**kwargs)
        self.decision = decision
        self.candidate = candidate
        self.base = base

    def execute(self, context: Context) -> Any:
        params = context.get("params") or {}
        settings = task_settings(context)
        required, why = approval_requirement(settings.promotion.require_approval, params, self.decision)
        if not required:
            self.log.info("no approval needed: %s", why)
            raise AirflowSkipException(why)
        hours = settings.promotion.approval_timeout_hours
        self.response_timeout = timedelta(hours=hours)
        deadline = (datetime.now(UTC) + self.response_timeout).strftime("%Y-%m-%d %H:%M UTC")
        url = report_url(self.decision)
        if url:
            context["ti"].xcom_push(key=REPORT_KEY, value=url)
        new, old = self.candidate["version"], self.base.get("version")
        forced = None
        if not self.decision.get("promote"):
            forced = str(params.get("force_promote_reason") or "")
        self.subject = f"Promote {new} to production (now {old})?" + (
            " FORCED despite the gate" if forced else ""
        )
        self.body = approval_body(
            self.decision, self.candidate, self.base,
            confidence=settings.evaluation.confidence, report_url=url, timeout_hours=hours,
            deadline=deadline, forced_reason=forced,
        )  # fmt: skip
        try:
            answer_at = self.generate_link_to_ui_from_context(context=context)
        except ValueError:  # no [api] base_url configured
            answer_at = "the Airflow UI: Browse > Required actions"
        self.log.info("%s: waiting for a person to approve %s (until %s): %s", why, new, deadline, answer_at)
        from continuous_learning.airflow.notifications import notify_approval_request

        notify_approval_request(context, new, old, answer_at, deadline)
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        from continuous_learning.airflow.notifications import record_run_note

        settings = task_settings(context)
        new, old = self.candidate["version"], self.base.get("version")
        hours = settings.promotion.approval_timeout_hours
        if "error" in event:
            timed_out = event.get("error_type") == "timeout"
            outcome = {
                "required": True, "approved": False, "candidate": new, "production": old,
                "responded_by": None, "responded_at": None, "comment": None, "timed_out": timed_out,
                "error": str(event.get("error")),
            }  # fmt: skip
            uri = _record(context, settings, outcome)
            if timed_out:
                note = (
                    f"no answer to the approval request within {hours:g} h "
                    f"(promotion.approval_timeout_hours): {new} NOT promoted; production stays {old}"
                )
            else:
                note = (
                    f"the approval request ended without an answer ({event.get('error')}): {new} NOT promoted"
                )
            record_run_note(context, note)
            self.log.error("%s (recorded in %s)", note, uri)
            raise AirflowFailException(note)
        payload = HITLOperator.execute_complete(self, context=context, event=event)
        outcome = approval_outcome(payload, new, old)
        self.hitl_summary_extra["approved"] = outcome["approved"]
        uri = _record(context, settings, outcome)
        line = f"{new} {describe_outcome(outcome)}"
        if outcome["approved"]:
            self.log.info("APPROVED: %s (recorded in %s)", line, uri)
        else:
            record_run_note(context, f"{line}; production unchanged ({old})")
            self.log.warning("REJECTED: %s (recorded in %s)", line, uri)
        return outcome
