"""Checks on a run request (the DAG Params of a manual run) before anything starts.

The trigger form validates types and bounds in the browser and Airflow validates them again against the
Params' JSON schema; these checks add what a schema cannot know (the registry's versions, the settings'
own bounds, combinations of fields) and hold for runs created through the REST API or the CLI too.
Every problem names the field it is about. No Airflow imports here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from continuous_learning.config import ConfigError, Settings, load_settings
from continuous_learning.promotion_policy import FORCE_PROMOTE_CONFIRMATION

MIN_REASON_CHARS = 10
ALGORITHMS = ("grpo", "ppo", "sft")

# Param name -> (minimum, maximum, exclusive minimum); the settings' own bounds are checked after.
NUMERIC_BOUNDS: dict[str, tuple[float, float, bool]] = {
    "lookback_days": (1, 90, False),
    "learning_rate": (0.0, 1.0, True),
    "max_steps": (1, 100_000, False),
    "samples_per_prompt": (2, 64, False),
    "approval_timeout_hours": (0.0, 168.0, True),
}
INTEGER_PARAMS = {"lookback_days", "max_steps", "samples_per_prompt"}


def approval_overrides(params: Mapping[str, Any]) -> dict[str, Any]:
    """Settings overrides from the ``require_approval`` Param: it can ask for an approval, never waive one.

    ``true`` requires a person's approval for this run; ``false`` (the default) keeps
    ``promotion.require_approval`` as configured, so a run cannot switch off a configured requirement.
    """
    return {"promotion.require_approval": True} if params.get("require_approval") is True else {}


class RequestError(ValueError):
    """The request is invalid; the message lists each problem with the field it names."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("invalid run request: " + "; ".join(str(p) for p in problems))


@dataclass(frozen=True)
class Problem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _number_problems(params: Mapping[str, Any]) -> list[Problem]:
    problems = []
    for name, (low, high, exclusive) in NUMERIC_BOUNDS.items():
        value = params.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(Problem(name, f"must be a number (got {value!r})"))
            continue
        if name in INTEGER_PARAMS and not float(value).is_integer():
            problems.append(Problem(name, f"must be a whole number (got {value!r})"))
        too_low = value <= low if exclusive else value < low
        if too_low or value > high:
            lower = f"> {low:g}" if exclusive else f">= {low:g}"
            problems.append(Problem(name, f"must be {lower} and <= {high:g} (got {value!r})"))
    return problems


def _window_problems(params: Mapping[str, Any], today: date) -> list[Problem]:
    value = params.get("window_end")
    if not value:
        return []
    try:
        end = date.fromisoformat(str(value))
    except ValueError:
        return [Problem("window_end", f"must be a date YYYY-MM-DD (got {value!r})")]
    if end >= today:
        return [
            Problem("window_end", f"must be a past day: its data is complete only after it ends (got {end})")
        ]
    return []


def _combination_problems(params: Mapping[str, Any]) -> list[Problem]:
    if not params.get("force_promote"):
        return []
    problems = []
    typed = str(params.get("force_promote_confirmation") or "").strip()
    if typed != FORCE_PROMOTE_CONFIRMATION:
        problems.append(
            Problem(
                "force_promote_confirmation",
                f"force_promote needs the confirmation typed exactly as {FORCE_PROMOTE_CONFIRMATION!r} "
                f"(got {typed!r})",
            )
        )
    reason = str(params.get("force_promote_reason") or "").strip()
    if len(reason) < MIN_REASON_CHARS:
        problems.append(
            Problem(
                "force_promote_reason",
                f"force_promote needs a reason of at least {MIN_REASON_CHARS} characters; it is kept in "
                "the production alias history",
            )
        )
    if params.get("skip_promotion"):
        problems.append(Problem("force_promote", "cannot be combined with skip_promotion"))
    if params.get("dry_run"):
        problems.append(Problem("force_promote", "cannot be combined with dry_run (a dry run never trains)"))
    return problems


def _base_model_problems(
    params: Mapping[str, Any], known_versions: Callable[[], Collection[str]]
) -> list[Problem]:
    value = str(params.get("base_model_version") or "production").strip()
    if value == "production":
        return []
    if not re.fullmatch(r"v[0-9]+", value):
        return [
            Problem("base_model_version", f"must be 'production' or a version such as v3 (got {value!r})")
        ]
    known = sorted(known_versions(), key=lambda v: int(v[1:]) if v[1:].isdigit() else -1)
    if value not in known:
        listed = ", ".join(known) or "none yet"
        return [Problem("base_model_version", f"{value} is not in the model registry (known: {listed})")]
    return []


def check_training_request(
    params: Mapping[str, Any],
    param_settings: Mapping[str, str],
    known_versions: Callable[[], Collection[str]],
    today: date | None = None,
) -> Settings:
    """Check a ``continuous_training`` request; return the run's settings or raise :class:`RequestError`.

    :param params: the run's Params (defaults merged with the run's conf).
    :param param_settings: Param name -> dotted settings key, for the settings overrides.
    :param known_versions: returns the registry's versions (called only when a version is named).
    """
    problems = _number_problems(params)
    problems += _window_problems(params, today or date.today())
    if params.get("algorithm") is not None and params["algorithm"] not in ALGORITHMS:
        problems.append(
            Problem("algorithm", f"must be one of {', '.join(ALGORITHMS)} (got {params['algorithm']!r})")
        )
    if params.get("require_approval") not in (None, True, False):
        problems.append(
            Problem("require_approval", f"must be true or false (got {params['require_approval']!r})")
        )
    problems += _combination_problems(params)
    overrides = {key: params[name] for name, key in param_settings.items() if params.get(name) is not None}
    overrides.update(approval_overrides(params))
    settings = None
    try:
        settings = load_settings(overrides=overrides)
    except ConfigError as exc:
        by_key = {key: name for name, key in param_settings.items()}
        message = str(exc).removeprefix("invalid settings: ")
        field = next((name for key, name in by_key.items() if message.startswith(key + ":")), "settings")
        if not any(p.field == field for p in problems):
            problems.append(Problem(field, message))
    if problems:
        raise RequestError(problems)
    problems = _base_model_problems(params, known_versions)
    if problems:
        raise RequestError(problems)
    assert settings is not None
    return settings


def check_rollback_request(params: Mapping[str, Any], known_versions: Callable[[], Collection[str]]) -> None:
    """Check a ``model_rollback`` request: a named target must exist; the reason must say something."""
    problems = []
    target = str(params.get("target_version") or "").strip()
    if target != "previous":
        if not re.fullmatch(r"v[0-9]+", target):
            problems.append(
                Problem("target_version", f"must be 'previous' or a version such as v3 (got {target!r})")
            )
        elif target not in set(known_versions()):
            problems.append(Problem("target_version", f"{target} is not in the model registry"))
    if len(str(params.get("reason") or "").strip()) < 5:
        problems.append(
            Problem("reason", "say why in at least 5 characters; it is kept in the alias history")
        )
    if problems:
        raise RequestError(problems)
