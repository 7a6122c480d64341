"""Late feedback: find the past days whose feedback changed since they were ingested (they are then
re-ingested by the ingest stage's operators, mapped over the days, and announced once)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from continuous_learning.airflow.context import task_settings

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowSkipException


class FindDaysWithNewFeedbackOperator(BaseOperator):
    """List past days whose feedback inputs changed since they were ingested.

    :param lookback_days: how many days before the run's date to check.
    """

    template_fields = ("lookback_days",)

    def __init__(self, *, lookback_days: int = 14, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lookback_days = lookback_days

    def execute(self, context: Context) -> list[str]:
        from continuous_learning.data.late_feedback import days_with_new_feedback

        settings = task_settings(context)
        when = context.get("logical_date") or context["dag_run"].run_after
        today = (when + timedelta(days=1)).date()
        stale = days_with_new_feedback(
            settings.storage.data_uri, settings.storage.feedback_uri, today, int(self.lookback_days)
        )
        for item in stale:
            self.log.info(
                "%s received %d new feedback file(s): %s", item.day, len(item.new_files), item.new_files
            )
        if not stale:
            raise AirflowSkipException(
                f"no ingested day of the last {self.lookback_days} received new feedback"
            )
        return [item.day.isoformat() for item in stale]
