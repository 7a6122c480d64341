"""Operators that keep reward data fresh when feedback arrives late, without retraining per day."""

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


class AnnounceRewardPartitionsOperator(BaseOperator):
    """Emit the reward-partitions Asset event (give it ``outlets``) that schedules training.

    Backfill runs do not announce: a backfill of N days must not start N trainings. The next
    daily ``continuous_training`` run (or one manual trigger) trains on the rewritten window once.
    """

    def execute(self, context: Context) -> None:
        run_type = context["dag_run"].run_type
        if "backfill" in str(getattr(run_type, "value", run_type)).lower():
            raise AirflowSkipException(
                "backfill run: not announcing, so the backfill starts no training per day; "
                "continuous_training picks the rewritten days up at its next run"
            )
        self.log.info("announcing new reward data to %s", [o for o in self.outlets])
