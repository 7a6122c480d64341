"""Server-side checks of a run request, the validate_request task, and the promote task's force/dry-run hooks."""

from __future__ import annotations

from typing import Any

import pytest
from continuous_learning.airflow.context import PARAM_SETTINGS
from continuous_learning.registry import ModelRegistry
from continuous_learning.run_request import (
    FORCE_PROMOTE_CONFIRMATION,
    RequestError,
    check_rollback_request,
    check_training_request,
)

from tests.unit.helpers import DEFAULTS, TODAY, airflow_context


def _check(versions: tuple[str, ...] = ("v0", "v1"), **params: Any) -> Any:
    return check_training_request({**DEFAULTS, **params}, PARAM_SETTINGS, lambda: versions, today=TODAY)


def _fields(exc: pytest.ExceptionInfo[RequestError]) -> set[str]:
    return {p.field for p in exc.value.problems}


def test_defaults_are_valid_and_overrides_reach_the_settings() -> None:
    assert _check().trainer.max_steps >= 1
    settings = _check(max_steps=5, samples_per_prompt=4, learning_rate=5e-4, lookback_days=2, algorithm="ppo")
    t = settings.trainer
    assert (t.max_steps, t.samples_per_prompt, t.learning_rate, t.algorithm) == (5, 4, 5e-4, "ppo")
    assert settings.dataset.lookback_days == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_steps", -1), ("max_steps", 0), ("lookback_days", 91), ("learning_rate", 0), ("samples_per_prompt", 1),
     ("max_steps", 2.5), ("max_steps", "ten")],
)  # fmt: skip
def test_out_of_range_numbers_name_the_field(field: str, value: Any) -> None:
    with pytest.raises(RequestError) as exc:
        _check(**{field: value})
    assert field in _fields(exc)
    assert str(exc.value).startswith(f"invalid run request: {field}: ")


def test_unknown_base_model_version_names_the_field_and_the_known_versions() -> None:
    with pytest.raises(RequestError) as exc:
        _check(base_model_version="v7")
    assert (
        str(exc.value)
        == "invalid run request: base_model_version: v7 is not in the model registry (known: v0, v1)"
    )
    with pytest.raises(RequestError, match="base_model_version: must be 'production' or a version"):
        _check(base_model_version="latest")
    assert _check(base_model_version="v1") is not None


def test_registry_is_not_read_for_production() -> None:
    def boom() -> list[str]:
        raise AssertionError("registry read")

    check_training_request(DEFAULTS, PARAM_SETTINGS, boom, today=TODAY)


def test_window_end_must_be_a_past_date() -> None:
    with pytest.raises(RequestError, match="window_end: must be a past day"):
        _check(window_end=TODAY.isoformat())
    with pytest.raises(RequestError, match="window_end: must be a date"):
        _check(window_end="yesterday")
    assert _check(window_end="2026-11-10") is not None


def test_force_promote_needs_typed_confirmation_and_reason() -> None:
    with pytest.raises(RequestError) as exc:
        _check(force_promote=True)
    assert _fields(exc) == {"force_promote_confirmation", "force_promote_reason"}
    with pytest.raises(RequestError) as exc:
        _check(
            force_promote=True,
            force_promote_confirmation="yes",
            force_promote_reason="gate noise on a tiny eval",
        )
    assert _fields(exc) == {"force_promote_confirmation"}
    ok = {
        "force_promote_confirmation": FORCE_PROMOTE_CONFIRMATION,
        "force_promote_reason": "eval set was broken",
    }
    assert _check(force_promote=True, **ok) is not None


@pytest.mark.parametrize("switch", ["dry_run", "skip_promotion"])
def test_force_promote_cannot_be_combined_with_dry_run_or_skip(switch: str) -> None:
    ok = {
        "force_promote_confirmation": FORCE_PROMOTE_CONFIRMATION,
        "force_promote_reason": "eval set was broken",
    }
    with pytest.raises(RequestError, match=f"force_promote: cannot be combined with {switch}"):
        _check(force_promote=True, **{switch: True}, **ok)


def test_rollback_request() -> None:
    check_rollback_request({"target_version": "previous", "reason": "bad answers"}, lambda: [])
    check_rollback_request({"target_version": "v1", "reason": "bad answers"}, lambda: ["v0", "v1"])
    with pytest.raises(RequestError, match="target_version: v9 is not in the model registry"):
        check_rollback_request({"target_version": "v9", "reason": "bad answers"}, lambda: ["v0"])
    with pytest.raises(RequestError, match="reason: "):
        check_rollback_request({"target_version": "previous", "reason": " "}, lambda: [])


# -- the Airflow side ---------------------------------------------------------------------------------


def test_validate_request_fails_fast_naming_the_field(registry: ModelRegistry) -> None:
    from airflow.sdk.exceptions import AirflowFailException
    from continuous_learning.airflow.validation import ValidateRequestOperator

    op = ValidateRequestOperator(task_id="validate_request")
    assert op.retries == 0
    with pytest.raises(
        AirflowFailException, match=r"base_model_version: v5 is not in the model registry \(known: v0, v1\)"
    ):
        op.execute(airflow_context(base_model_version="v5"))  # type: ignore[arg-type]
    with pytest.raises(AirflowFailException, match="max_steps: must be >= 1"):
        op.execute(airflow_context(max_steps=-4))  # type: ignore[arg-type]
    summary = op.execute(airflow_context(base_model_version="v1", max_steps=5))  # type: ignore[arg-type]
    assert summary["effective"]["max_steps"] == 5
    rollback = ValidateRequestOperator(task_id="validate_request", kind="rollback")
    with pytest.raises(AirflowFailException, match="target_version: v8 is not in the model registry"):
        rollback.execute(airflow_context(target_version="v8", reason="bad answers"))  # type: ignore[arg-type]


def _promote_op() -> Any:
    from continuous_learning.airflow.promotion import PromoteModelOperator

    return PromoteModelOperator(
        task_id="promote",
        decision={"promote": False, "reasons": ["CI of the difference includes 0"], "report": {}},
        candidate={"version": "v1"},
        base={"version": "v0", "production_revision": 1},
        aws_conn_id=None,
    )


def test_gate_rejection_skips_with_a_run_note(registry: ModelRegistry) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    context = airflow_context()
    with pytest.raises(AirflowSkipException, match="gate rejected v1; production unchanged"):
        _promote_op().execute(context)
    assert "gate rejected v1" in context["ti"].xcom["run_note"]
    assert registry.alias("production").version == "v0"  # type: ignore[union-attr]


def test_force_promote_overrides_the_gate_and_is_recorded(registry: ModelRegistry) -> None:
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    with pytest.raises(AirflowFailException, match="force_promote_confirmation"):
        _promote_op().execute(airflow_context(force_promote=True, force_promote_confirmation="promote"))
    with pytest.raises(AirflowSkipException, match="DRY RUN"):
        _promote_op().execute(airflow_context(dry_run=True))
    context = airflow_context(
        force_promote=True,
        force_promote_confirmation=FORCE_PROMOTE_CONFIRMATION,
        force_promote_reason="held-out set was stale",
    )
    moved = _promote_op().execute(context)
    assert moved["version"] == "v1"
    last = registry.history("production")[-1]
    assert last.version == "v1" and last.run_id == "continuous_training__manual__test"
    assert last.reason.startswith("FORCED despite gate rejection: held-out set was stale")
    assert "CI of the difference includes 0" in last.reason
    assert "force-promoted" in context["ti"].xcom["run_note"]
