"""The first task of a manual run: check the request on the server side before anything starts.

The trigger form and Airflow's Param schema already refuse wrong types and out-of-range numbers; this
task repeats those checks (a run can come from the REST API or the CLI) and adds what only the server
knows: which model versions the registry holds, the settings' own bounds, and combinations of fields
(force-promote needs its typed confirmation and a reason). It fails at once, without retries, with a
message naming each bad field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from continuous_learning.airflow.context import PARAM_SETTINGS, configure_storage

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException


def _known_versions(registry_uri: str) -> list[str]:
    from continuous_learning.registry import ModelRegistry

    return [v.version for v in ModelRegistry(registry_uri).versions()]


class ValidateRequestOperator(BaseOperator):
    """Reject a bad run request before anything starts; the error names the field.

    :param kind: ``training`` (the ``continuous_training`` Params) or ``rollback`` (``model_rollback``).
    """

    template_fields: Sequence[str] = ()
    ui_color = "#f0f0f0"

    def __init__(self, *, kind: str = "training", **kwargs: Any) -> None:
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        if kind not in ("training", "rollback"):
            raise ValueError(f"kind must be 'training' or 'rollback' (got {kind!r})")
        self.kind = kind

    def execute(self, context: Context) -> dict[str, Any]:
        from continuous_learning.config import ConfigError, load_settings
        from continuous_learning.run_request import (
            RequestError,
            check_rollback_request,
            check_training_request,
        )

        params = dict(context.get("params") or {})
        try:
            base = load_settings()
        except ConfigError as exc:
            raise AirflowFailException(str(exc)) from None
        configure_storage(base)
        registry_uri = base.storage.registry_uri
        try:
            if self.kind == "rollback":
                check_rollback_request(params, lambda: _known_versions(registry_uri))
                settings = base
            else:
                settings = check_training_request(
                    params, PARAM_SETTINGS, lambda: _known_versions(registry_uri)
                )
        except RequestError as exc:
            for problem in exc.problems:
                self.log.error("invalid request: %s", problem)
            raise AirflowFailException(str(exc)) from None
        summary = {
            "params": {k: v for k, v in params.items() if not k.startswith("force_promote_confirmation")},
            "storage_root": settings.storage.root,
        }
        if self.kind == "training":
            t = settings.trainer
            summary["effective"] = {
                "lookback_days": settings.dataset.lookback_days,
                "algorithm": t.algorithm,
                "learning_rate": t.learning_rate,
                "max_steps": t.max_steps,
                "samples_per_prompt": t.samples_per_prompt,
                "require_approval": settings.promotion.require_approval,
                "approval_timeout_hours": settings.promotion.approval_timeout_hours,
            }
            if params.get("dry_run"):
                self.log.info(
                    "DRY RUN: dataset, cluster, base model and specs only; no training, no promotion"
                )
            if settings.promotion.require_approval and not params.get("dry_run"):
                self.log.info(
                    "APPROVAL REQUIRED: a promotion waits for a person (task approve_promotion), at most %g h",
                    settings.promotion.approval_timeout_hours,
                )
            if params.get("force_promote"):
                self.log.warning(
                    "FORCE PROMOTE requested: the candidate is promoted even if the gate rejects it (reason: %s)",
                    params.get("force_promote_reason"),
                )
        self.log.info("request is valid: %s", summary)
        return summary
