"""Shared by the operators: settings from a task's context (DAG Params as overrides).

Imported by every operator module, so by every DAG file: the settings (pydantic) load when a task runs.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

if TYPE_CHECKING:
    from continuous_learning.config import Settings

# DAG Param name -> settings key. Params left at None keep the configured value.
PARAM_SETTINGS = {
    "lookback_days": "dataset.lookback_days",
    "min_train_rows": "dataset.min_train_rows",
    "algorithm": "trainer.algorithm",
    "learning_rate": "trainer.learning_rate",
    "max_steps": "trainer.max_steps",
    "samples_per_prompt": "trainer.samples_per_prompt",
    "prompts_per_step": "trainer.prompts_per_step",
    "eval_max_prompts": "evaluation.max_prompts",
    "gate_margin": "evaluation.margin",
    "approval_timeout_hours": "promotion.approval_timeout_hours",
}


def settings_from_context(context: Any, extra: dict[str, Any] | None = None) -> Settings:
    from continuous_learning.config import load_settings
    from continuous_learning.run_request import approval_overrides

    params = context.get("params") or {}
    overrides = {key: params[name] for name, key in PARAM_SETTINGS.items() if params.get(name) is not None}
    overrides.update(approval_overrides(params))
    overrides.update(extra or {})
    return load_settings(overrides=overrides)


def run_identity(context: Any) -> str:
    return f"{context['dag'].dag_id}__{context['run_id']}"


def window_end(context: Any) -> date:
    """The training window's last day: the ``window_end`` Param, else the day before the run's date."""
    params = context.get("params") or {}
    if params.get("window_end"):
        return date.fromisoformat(str(params["window_end"]))
    when = context.get("logical_date") or context["dag_run"].run_after
    return (when - timedelta(days=1)).date()


def task_settings(context: Any, aws_conn_id: str | None = "aws_default") -> Settings:
    """Settings for a task; a bad value fails the task at once (no retries), naming the key.

    Also points ``s3://`` storage at the task's AWS connection.
    """
    from continuous_learning.config import ConfigError

    try:
        settings = settings_from_context(context)
    except ConfigError as exc:
        raise AirflowFailException(str(exc)) from None
    configure_storage(settings, aws_conn_id)
    return settings


def configure_storage(settings: Settings, aws_conn_id: str | None = "aws_default") -> None:
    """For ``s3://`` roots, give the storage layer clients from the Amazon provider's hook.

    The Airflow connection owns credentials, region and endpoint; retries are adaptive (throttling
    and 5xx answers are retried with backoff).
    """
    if not settings.storage.root.startswith("s3://"):
        return
    from botocore.config import Config
    from continuous_learning import storage

    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id=aws_conn_id, config=Config(retries={"mode": "adaptive", "max_attempts": 8}))
    storage.set_s3_client_factory(hook.get_conn)
