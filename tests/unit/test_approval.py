"""The optional human approval before promotion: when it is asked, what an answer does, and the promote
task's own check of it. The whole flow through a real scheduler: tests/browser/test_approval.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from continuous_learning.airflow.approval import approval_body, approval_outcome
from continuous_learning.airflow.context import PARAM_SETTINGS, settings_from_context
from continuous_learning.config import ConfigError, load_settings
from continuous_learning.promotion_policy import approval_gate, approval_requirement
from continuous_learning.registry import ModelRegistry
from continuous_learning.run_request import RequestError, check_training_request

from tests.unit.helpers import DEFAULTS, TODAY, airflow_context

PROMOTE = {
    "promote": True,
    "reasons": ["improvement +0.0590 (90% CI +0.0310..+0.0900) clears the margin +0.0000"],
    "overall": {"mean": 0.059, "low": 0.031, "high": 0.09, "n": 116},
    "candidate_mean": 0.681,
    "production_mean": 0.622,
    "slices": {"agent=travel": {"mean": 0.07, "low": 0.02, "high": 0.12, "n": 40}},
    "guardrails": {"tool_call_validity_candidate": 0.95, "tool_call_validity_production": 0.931},
    "report": {"html": "file:///data/runs/r1/report/report.html"},
}
REJECT = {**PROMOTE, "promote": False, "reasons": ["CI includes 0"]}
AT = datetime(2026, 11, 29, 9, 30, tzinfo=UTC)


def _answer(option: str, comment: str | None = None, name: str = "maria") -> dict[str, Any]:
    return {
        "chosen_options": [option],
        "params_input": {"comment": comment},
        "responded_at": AT,
        "responded_by_user": {"id": name, "name": name},
    }


# -- when a person is asked ----------------------------------------------------------------------------


def test_off_by_default_in_every_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CL_STORAGE__ROOT", raising=False)
    for env in ("local", "prod"):
        promotion = load_settings(env).promotion
        assert (promotion.require_approval, promotion.approval_timeout_hours) == (False, 24)


def test_the_environment_variable_turns_it_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CL_PROMOTION__REQUIRE_APPROVAL", "true")
    monkeypatch.setenv("CL_PROMOTION__APPROVAL_TIMEOUT_HOURS", "4")
    promotion = load_settings().promotion
    assert (promotion.require_approval, promotion.approval_timeout_hours) == (True, 4)
    with pytest.raises(ConfigError, match=r"promotion\.approval_timeout_hours"):
        load_settings(overrides={"promotion.approval_timeout_hours": 0})


@pytest.mark.parametrize(
    ("require", "params", "decision", "asked", "why"),
    [
        (False, {}, PROMOTE, False, "not required"),
        (True, {"dry_run": True}, PROMOTE, False, "DRY RUN"),
        (True, {"skip_promotion": True}, PROMOTE, False, "skip_promotion"),
        (True, {}, None, False, "no gate decision"),
        (True, {}, REJECT, False, "gate rejected"),
        (True, {}, PROMOTE, True, "the gate would promote"),
        (True, {"force_promote": True}, REJECT, True, "force_promote"),
        (False, {"force_promote": True}, REJECT, False, "not required"),
    ],
)  # fmt: skip
def test_asked_only_when_something_would_be_promoted(
    require: bool, params: dict[str, Any], decision: Any, asked: bool, why: str
) -> None:
    needed, reason = approval_requirement(require, params, decision)
    assert needed is asked
    assert why in reason


def test_a_run_can_ask_for_approval_but_never_waive_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings_from_context(airflow_context(require_approval=True)).promotion.require_approval
    assert not settings_from_context(airflow_context(require_approval=False)).promotion.require_approval
    monkeypatch.setenv("CL_PROMOTION__REQUIRE_APPROVAL", "true")
    assert settings_from_context(airflow_context(require_approval=False)).promotion.require_approval
    timeout = settings_from_context(
        airflow_context(approval_timeout_hours=2.5)
    ).promotion.approval_timeout_hours
    assert timeout == 2.5


def test_the_request_check_knows_the_approval_params() -> None:
    def check(**params: Any) -> Any:
        return check_training_request({**DEFAULTS, **params}, PARAM_SETTINGS, lambda: (), today=TODAY)

    settings = check(require_approval=True, approval_timeout_hours=6)
    assert settings.promotion.require_approval and settings.promotion.approval_timeout_hours == 6
    with pytest.raises(RequestError, match=r"approval_timeout_hours: must be > 0 and <= 168"):
        check(approval_timeout_hours=0)
    with pytest.raises(RequestError, match=r"approval_timeout_hours: must be > 0 and <= 168"):
        check(approval_timeout_hours=200)
    with pytest.raises(RequestError, match="require_approval: must be true or false"):
        check(require_approval="yes")


# -- what the approver reads ----------------------------------------------------------------------------


def test_the_request_shows_candidate_against_production_and_the_report() -> None:
    body = approval_body(
        PROMOTE, {"version": "v3", "dataset_id": "2026-11-25-abc"}, {"version": "v2"},
        confidence=0.9, report_url="https://bucket.s3.amazonaws.com/runs/r1/report/report.html",
        timeout_hours=24, deadline="2026-11-30 09:30 UTC",
    )  # fmt: skip
    assert "| | candidate v3 | production v2 |" in body
    assert "| mean reward | 0.681 | 0.622 |" in body
    assert "| tool-call validity | 95.0% | 93.1% |" in body
    assert "**+0.0590**, 90% CI +0.0310..+0.0900" in body
    assert "agent=travel +0.070 (+0.020..+0.120)" in body
    assert "Gate: **PROMOTE**" in body and "116 held-out prompts" in body
    assert "(https://bucket.s3.amazonaws.com/runs/r1/report/report.html)" in body
    assert "No answer by 2026-11-30 09:30 UTC (24 h): v3 is **not** promoted." in body
    forced = approval_body(
        REJECT, {"version": "v3"}, {"version": "v2"}, confidence=0.9, report_url=None, timeout_hours=2,
        deadline="d", forced_reason="held-out set was stale",
    )  # fmt: skip
    assert "Gate: **REJECT**" in forced and "Forced promotion requested despite the gate" in forced
    assert "held-out set was stale" in forced and "Run report: not written" in forced


# -- what an answer does ---------------------------------------------------------------------------------


def test_the_answer_is_recorded_with_who_when_and_why() -> None:
    outcome = approval_outcome(_answer("Reject", "  calendar slice regressed  "), "v3", "v2")
    assert outcome == {
        "required": True, "approved": False, "chosen_options": ["Reject"], "candidate": "v3",
        "production": "v2", "responded_by": {"id": "maria", "name": "maria"},
        "responded_at": "2026-11-29T09:30:00+00:00", "comment": "calendar slice regressed", "timed_out": False,
    }  # fmt: skip
    assert approval_outcome(_answer("Approve", ""), "v3", "v2")["comment"] is None


@pytest.mark.parametrize(
    ("require", "answer", "verdict", "text"),
    [
        (True, _answer("Approve", "ship it"), "promote", "approved by maria at 2026-11-29T09:30:00+00:00: ship it"),
        (True, _answer("Reject", "too risky"), "skip", "v3 rejected by maria at 2026-11-29T09:30:00+00:00: too risky; production unchanged"),
        (True, None, "fail", "recorded no approval for v3"),
        (False, None, "promote", ""),
        # A recorded rejection holds even where the requirement was switched off since.
        (False, _answer("Reject"), "skip", "v3 rejected by maria"),
    ],
)  # fmt: skip
def test_promote_follows_the_answer_and_fails_closed(
    require: bool, answer: dict[str, Any] | None, verdict: str, text: str
) -> None:
    approval = approval_outcome(answer, "v3", "v2") if answer else None
    got, note = approval_gate(require, approval, "v3")
    assert got == verdict
    assert text in note


def test_an_approval_for_another_version_is_no_approval() -> None:
    verdict, note = approval_gate(True, approval_outcome(_answer("Approve"), "v2", "v1"), "v3")
    assert verdict == "fail" and "for v2, not v3" in note


# -- the operators, with the registry in storage ----------------------------------------------------------


def _promote(approval: Any, decision: Any = PROMOTE) -> Any:
    from continuous_learning.airflow.promotion import PromoteModelOperator

    return PromoteModelOperator(
        task_id="promote", decision=decision, candidate={"version": "v1"},
        base={"version": "v0", "production_revision": 1}, approval=approval, aws_conn_id=None,
    )  # fmt: skip


def test_promote_moves_production_only_with_a_recorded_approval(registry: ModelRegistry) -> None:
    rejected = approval_outcome(_answer("Reject", "calendar slice regressed"), "v1", "v0")
    context = airflow_context(require_approval=True)
    with pytest.raises(AirflowSkipException, match=r"v1 rejected by maria .*: calendar slice regressed"):
        _promote(rejected).execute(context)
    assert "rejected by maria" in context["ti"].xcom["run_note"]
    with pytest.raises(AirflowFailException, match="recorded no approval for v1"):
        _promote(None).execute(airflow_context(require_approval=True))
    assert [r.version for r in registry.history("production")] == ["v0"]

    moved = _promote(approval_outcome(_answer("Approve", "ship it"), "v1", "v0")).execute(
        airflow_context(require_approval=True)
    )
    assert moved["version"] == "v1"
    last = registry.history("production")[-1]
    assert last.version == "v1" and "approved by maria" in last.reason and "ship it" in last.reason


def test_without_approval_promote_behaves_as_before(registry: ModelRegistry) -> None:
    with pytest.raises(AirflowSkipException, match="no gate decision"):
        _promote(None, decision=None).execute(airflow_context())
    with pytest.raises(AirflowSkipException, match="gate rejected v1"):
        _promote(None, decision=REJECT).execute(airflow_context(require_approval=True))
    assert _promote(None).execute(airflow_context())["version"] == "v1"


def _approval_op() -> Any:
    from continuous_learning.airflow.approval import PromotionApprovalOperator

    return PromotionApprovalOperator(
        task_id="approve_promotion", decision=PROMOTE, candidate={"version": "v1"},
        base={"version": "v0", "production_revision": 1},
    )  # fmt: skip


def test_approval_task_skips_without_waiting_when_not_required(storage_root: str) -> None:
    op = _approval_op()
    assert op.retries == 0 and op.options == ["Approve", "Reject"] and set(op.params) == {"comment"}
    with pytest.raises(AirflowSkipException, match="approval not required"):
        op.execute(airflow_context())
    with pytest.raises(AirflowSkipException, match="DRY RUN"):
        op.execute(airflow_context(require_approval=True, dry_run=True))


def test_approval_task_records_answers_and_fails_closed_on_timeout(storage_root: str) -> None:
    import json
    from pathlib import Path

    op = _approval_op()
    context = airflow_context(require_approval=True)
    outcome = op.execute_complete(context, _answer("Reject", "not now"))
    assert outcome["approved"] is False and outcome["comment"] == "not now"
    record = Path(
        storage_root.removeprefix("file://"), "runs", "continuous_training__manual__test", "approval.json"
    )
    assert json.loads(record.read_text())["responded_by"] == {"id": "maria", "name": "maria"}
    assert "v1 rejected by maria" in context["ti"].xcom["run_note"]

    timeout = {"error": "The Human-in-the-loop response timeout has passed without a response.",
               "error_type": "timeout"}  # fmt: skip
    with pytest.raises(AirflowFailException, match=r"no answer .* within 24 h .*v1 NOT promoted"):
        op.execute_complete(airflow_context(require_approval=True), timeout)
    assert json.loads(record.read_text())["timed_out"] is True


def test_dag_wiring(airflow_db: str) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import REPO

    dag = DagBag(dag_folder=str(REPO / "dags" / "continuous_training.py")).dags["continuous_training"]
    approval, promote = dag.task_dict["approve_promotion"], dag.task_dict["promote"]
    assert approval.upstream_task_ids >= {"gate"} and "approve_promotion" in promote.upstream_task_ids
    assert promote.trigger_rule == "none_failed_min_one_success"
    assert approval.retries == 0 and set(approval.serialized_params) == {"comment"}
    params = dag.params
    assert params["require_approval"] is False and params["approval_timeout_hours"] is None
    assert params.get_param("require_approval").schema["section"] == "Promotion approval"
    # The trigger form labels the empty algorithm choice from values_display["null"], not "null".
    assert (
        params.get_param("algorithm").schema["values_display"]["null"] == "From settings (trainer.algorithm)"
    )
