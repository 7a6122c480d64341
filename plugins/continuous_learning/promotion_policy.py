"""What happens after the gate: promote, ask a person, skip, or force. Plain data in, plain data out.

The Airflow side (``airflow/approval.py``, ``airflow/promotion.py``) asks these functions and carries out
the answer: it raises the skip or the failure, records the run note, sends the alert, moves the alias.
No Airflow here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["promote", "skip", "fail"]

#: What a person types to promote a candidate the gate rejected (the trigger form and the request check
#: ask for it too; kept here, light, so the DAG file can show it without loading the settings).
FORCE_PROMOTE_CONFIRMATION = "PROMOTE ANYWAY"


@dataclass(frozen=True)
class Verdict:
    """What ``promote`` does.

    :param action: ``promote``, ``skip`` or ``fail``.
    :param message: for ``promote`` the reason kept in the alias history; otherwise why it skips or fails.
    :param run_note: whether ``message`` is also the run's note (a skip an operator must be able to find).
    :param notes: run notes to record before acting (a forced promotion says so even when it then fails).
    :param gate_rejected: the gate rejected the candidate and nothing overrides it (the rejection alert).
    """

    action: Action
    message: str
    run_note: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)
    gate_rejected: bool = False


def who(user: Mapping[str, Any] | None) -> str:
    if not user:
        return "nobody"
    name, ident = user.get("name"), user.get("id")
    return str(name) if not ident or name == ident else f"{name} (id {ident})"


def describe_outcome(outcome: Mapping[str, Any]) -> str:
    """One line for logs, run notes and the alias history."""
    verb = "approved" if outcome.get("approved") else "rejected"
    text = f"{verb} by {who(outcome.get('responded_by'))}"
    if outcome.get("responded_at"):
        text += f" at {outcome['responded_at']}"
    if outcome.get("comment"):
        text += f": {outcome['comment']}"
    return text


def approval_requirement(
    require_approval: bool, params: Mapping[str, Any], decision: Mapping[str, Any] | None
) -> tuple[bool, str]:
    """Whether a person has to approve this run's promotion, and why (or why not).

    Asked only when something would be promoted: the gate said promote, or a forced promotion was
    requested. A dry run, ``skip_promotion`` and a gate rejection never wait.
    """
    if not require_approval:
        return False, "approval not required (promotion.require_approval is off; the run did not ask for it)"
    if params.get("dry_run"):
        return False, "DRY RUN: nothing is promoted, so there is nothing to approve"
    if params.get("skip_promotion"):
        return False, "skip_promotion: nothing is promoted, so there is nothing to approve"
    if not decision:
        return False, "no gate decision: nothing is promoted, so there is nothing to approve"
    if decision.get("promote"):
        return True, "the gate would promote the candidate; promotion.require_approval asks a person first"
    if params.get("force_promote"):
        return (
            True,
            "force_promote overrides a gate rejection; promotion.require_approval asks a person first",
        )
    return False, "the gate rejected the candidate: nothing is promoted, so there is nothing to approve"


def approval_gate(
    require_approval: bool, approval: Mapping[str, Any] | None, candidate: str
) -> tuple[Action, str]:
    """What ``promote`` does with the approval task's answer: ``("promote", note)``, ``("skip", why)``
    or ``("fail", why)``. Fails closed: a required approval that is missing or for another version
    is a failure, a rejection is a skip; a rejection counts even where approval is no longer required."""
    if approval and approval.get("required"):
        if approval.get("candidate") != candidate:
            return "fail", (
                f"the approval recorded is for {approval.get('candidate')}, not {candidate}; not promoted"
            )
        if not approval.get("approved"):
            return "skip", f"{candidate} {describe_outcome(approval)}; production unchanged"
        return "promote", describe_outcome(approval)
    if require_approval:
        return "fail", (
            f"promotion.require_approval is on but approve_promotion recorded no approval for {candidate} "
            "(was it skipped or cleared?); not promoted"
        )
    return "promote", ""


def verdict(
    decision: Mapping[str, Any] | None,
    candidate: Mapping[str, Any] | None,
    params: Mapping[str, Any],
    *,
    require_approval: bool,
    approval: Mapping[str, Any] | None = None,
) -> Verdict:
    """Whether the gate's ``decision`` moves ``production`` to ``candidate``, given the run's ``params``
    (dry run, skip, forced promotion with its typed confirmation) and the approval task's answer.

    In this order: a dry run skips; no decision (the gate did not run) skips; ``skip_promotion`` skips; a
    gate rejection skips unless a forced promotion is requested and confirmed (the irreversible step is
    checked here again, whatever the request's validation said); then the approval decides (fail closed).
    """
    if params.get("dry_run"):
        return Verdict("skip", "DRY RUN: promotion skipped on purpose (dry_run Param)")
    if not decision or not candidate:
        # promote also runs after a skipped approval task: make sure the gate really ran
        return Verdict("skip", "no gate decision (the gate did not run): nothing to promote")
    version = candidate["version"]
    reasons = "; ".join(decision["reasons"])
    if params.get("skip_promotion"):
        return Verdict(
            "skip", f"promotion skipped by the skip_promotion Param (gate said: {reasons})", run_note=True
        )
    reason = f"gate: {reasons}"
    notes: tuple[str, ...] = ()
    if not decision["promote"]:
        if not params.get("force_promote"):
            return Verdict(
                "skip",
                f"gate rejected {version}; production unchanged: {reasons}",
                run_note=True,
                gate_rejected=True,
            )
        if params.get("force_promote_confirmation") != FORCE_PROMOTE_CONFIRMATION:
            return Verdict(
                "fail",
                f"force_promote_confirmation: type {FORCE_PROMOTE_CONFIRMATION!r} to force a promotion",
            )
        reason = f"FORCED despite gate rejection: {params.get('force_promote_reason')} (gate said: {reasons})"
        notes = (f"{version} force-promoted: {reason}",)
    action, note = approval_gate(require_approval, approval, version)
    if action == "fail":
        return Verdict("fail", note, notes=notes)
    if action == "skip":
        return Verdict("skip", note, run_note=True, notes=notes)
    return Verdict("promote", f"{reason} | {note}" if note else reason, notes=notes)
