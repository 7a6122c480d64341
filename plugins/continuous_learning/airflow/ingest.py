"""Ingest stage: one day of raw logs curated, that day's reward partition built, and new reward data
announced (the Asset event that schedules training)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from continuous_learning.airflow.context import task_settings

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException


class _DayOperator(BaseOperator):
    """One day's step: ``day`` is ``YYYY-MM-DD``, templated, the run's ``ds`` by default."""

    template_fields: Sequence[str] = ("day",)
    ui_color = "#e8f4fd"

    def __init__(self, *, day: str = "{{ ds }}", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.day = day


class IngestDayOperator(_DayOperator):
    """Validate, deduplicate, redact and curate one day of raw interaction logs.

    :param day: the day to ingest, ``YYYY-MM-DD`` (templated; default: the run's ``ds``).
    """

    def execute(self, context: Context) -> dict[str, Any]:
        from continuous_learning.data.ingest import IngestError, ingest_day

        settings = task_settings(context)
        try:
            report = ingest_day(
                date.fromisoformat(self.day),
                raw_uri=settings.storage.raw_uri,
                out_uri=settings.storage.data_uri,
                feedback_uri=settings.storage.feedback_uri,
                max_record_bytes=settings.ingest.max_record_bytes,
                max_quarantine_share=settings.ingest.max_quarantine_share,
            )
        except IngestError as exc:
            raise AirflowFailException(str(exc)) from None
        if report.read == 0:
            self.log.info(
                "no raw records for %s under %s: wrote an empty partition", self.day, settings.storage.raw_uri
            )
        self.log.info(
            "read %d, accepted %d, duplicates %d, quarantined %d, redactions %s",
            report.read, report.accepted, report.duplicates, report.quarantined, report.redactions,
        )  # fmt: skip
        return report.as_dict()


class BuildRewardPartitionOperator(_DayOperator):
    """Turn one curated day into that day's VeRL-format reward partition.

    :param day: the day, ``YYYY-MM-DD`` (templated; default: ``ds``).
    """

    def execute(self, context: Context) -> dict[str, Any]:
        from continuous_learning.data.reward_dataset import build_day_partition

        settings = task_settings(context)
        report = build_day_partition(
            settings.storage.data_uri,
            date.fromisoformat(self.day),
            settings.dataset.validation_share,
            settings.dataset.test_share,
        )
        self.log.info(
            "reward partition %s: %d prompts (%s); skipped %s",
            self.day,
            report.prompts,
            report.by_split,
            report.skipped,
        )
        return dict(report.__dict__)


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
