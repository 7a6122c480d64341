"""Late feedback: re-ingest past days that received feedback since they were ingested.

Feedback (corrections, ratings) can arrive days after the interaction. This DAG finds those days,
rewrites their curated and reward partitions, and then announces new reward data once, so
`continuous_training` runs once for all of them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, CronTriggerTimetable, Param, TriggerRule
from continuous_learning.airflow.assets import REWARD_PARTITIONS
from continuous_learning.airflow.ingest import (
    AnnounceRewardPartitionsOperator,
    BuildRewardPartitionOperator,
    IngestDayOperator,
)
from continuous_learning.airflow.late_feedback import FindDaysWithNewFeedbackOperator

with DAG(
    dag_id="late_feedback_reprocess",
    description="Re-ingest days that received late feedback; announce new reward data once",
    schedule=CronTriggerTimetable("0 4 * * *", timezone="UTC"),
    start_date=datetime(2026, 11, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    tags=["continuous-learning", "data"],
    doc_md=__doc__,
    params={"lookback_days": Param(14, type="integer", minimum=1, maximum=90, title="Days to check")},
):
    find = FindDaysWithNewFeedbackOperator(
        task_id="find_days_with_new_feedback", lookback_days="{{ params.lookback_days }}"
    )
    reingest = IngestDayOperator.partial(task_id="reingest_day").expand(day=find.output)
    rebuild = BuildRewardPartitionOperator.partial(task_id="rebuild_reward_partition").expand(day=find.output)
    announce = AnnounceRewardPartitionsOperator(
        task_id="announce_reward_data",
        outlets=[REWARD_PARTITIONS],
        trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
    )
    reingest >> rebuild >> announce
