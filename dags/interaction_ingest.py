"""Daily ingest: one data interval = one UTC day of agent interaction logs.

raw logs + feedback -> curated partition (validated, deduplicated, PII-redacted, quarantine kept
apart) -> that day's reward-dataset partition, announced as an Asset for `continuous_training`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, CronDataIntervalTimetable
from continuous_learning.airflow.assets import REWARD_PARTITIONS
from continuous_learning.airflow.ingest import (
    AnnounceRewardPartitionsOperator,
    BuildRewardPartitionOperator,
    IngestDayOperator,
)

with DAG(
    dag_id="interaction_ingest",
    description="Curate one day of agent interaction logs and build its reward-dataset partition",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2026, 11, 1),
    catchup=True,
    max_active_runs=4,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    tags=["continuous-learning", "data"],
    doc_md=__doc__,
):
    ingest = IngestDayOperator(
        task_id="ingest_day",
        doc_md="Validate schema v1, deduplicate by interaction_id, join late feedback, redact PII. "
        "Writes `data/curated/dt=DAY/` and `data/quarantine/dt=DAY/`; the XCom holds the counts.",
    )
    build = BuildRewardPartitionOperator(
        task_id="build_reward_partition",
        doc_md="RL prompts with references in VeRL's parquet format: `data/reward/dt=DAY/`.",
    )
    announce = AnnounceRewardPartitionsOperator(
        task_id="announce_reward_data",
        outlets=[REWARD_PARTITIONS],
        doc_md="Asset event that schedules `continuous_training`; skipped in backfill runs.",
    )
    ingest >> build >> announce
