"""Continuous training: window -> Ray cluster -> train -> evaluate -> gate -> promote -> teardown.

Runs daily, or as soon as new reward partitions land. The window ends the day before the run
(or at the `window_end` Param). The Ray cluster is a setup task and its deletion a teardown task,
so the cluster goes away whatever happens in between.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param
from continuous_learning.airflow.operators import (
    AssembleTrainingDatasetOperator,
    EnsureBaseModelOperator,
    EvaluateCandidateOperator,
    TrainCandidateOperator,
)
from continuous_learning.airflow.promotion import EvaluationGateOperator, PromoteModelOperator
from continuous_learning.airflow.ray_cluster import CreateRayClusterOperator, DeleteRayClusterOperator

REWARD_PARTITIONS = Asset(name="continuous_learning.reward_partitions")
PRODUCTION_MODEL = Asset(name="continuous_learning.production_model")

with DAG(
    dag_id="continuous_training",
    description="Train a candidate on recent experience; promote it only if it is better",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 6 * * *", timezone="UTC"), assets=[REWARD_PARTITIONS]
    ),
    start_date=datetime(2026, 11, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=1)},
    tags=["continuous-learning", "training"],
    doc_md=__doc__,
    params={
        "window_end": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Window end (YYYY-MM-DD)",
            description="Last day of the training window. Empty: the day before the run.",
        ),
        "lookback_days": Param(None, type=["null", "integer"], minimum=1, maximum=90, title="Lookback days"),
        "base_model_version": Param(
            "production",
            type="string",
            title="Base model version",
            description="Registry version to train from, or 'production'.",
        ),
        "algorithm": Param(None, type=["null", "string"], enum=[None, "grpo", "ppo"], title="Algorithm"),
        "learning_rate": Param(
            None, type=["null", "number"], exclusiveMinimum=0, maximum=1, title="Learning rate"
        ),
        "max_steps": Param(None, type=["null", "integer"], minimum=1, title="Max steps"),
        "samples_per_prompt": Param(None, type=["null", "integer"], minimum=2, title="Samples per prompt"),
        "skip_promotion": Param(
            False,
            type="boolean",
            title="Skip promotion",
            description="Train and evaluate, but never move the production alias.",
        ),
    },
):
    dataset = AssembleTrainingDatasetOperator(task_id="assemble_dataset")
    cluster = CreateRayClusterOperator(task_id="create_ray_cluster")
    base = EnsureBaseModelOperator(
        task_id="ensure_base_model", cluster=cluster.output, dataset=dataset.output
    )
    candidate = TrainCandidateOperator(
        task_id="train_candidate", cluster=cluster.output, dataset=dataset.output, base=base.output
    )
    evaluation = EvaluateCandidateOperator(
        task_id="evaluate", cluster=cluster.output, dataset=dataset.output, base=base.output,
        candidate=candidate.output,
    )  # fmt: skip
    gate = EvaluationGateOperator(
        task_id="gate", evaluation=evaluation.output, dataset=dataset.output, candidate=candidate.output,
        base=base.output,
    )  # fmt: skip
    promote = PromoteModelOperator(
        task_id="promote", decision=gate.output, candidate=candidate.output, base=base.output,
        outlets=[PRODUCTION_MODEL],
    )  # fmt: skip
    teardown = DeleteRayClusterOperator(task_id="delete_ray_cluster", cluster=cluster.output)

    dataset >> cluster
    evaluation >> teardown
    cluster >> teardown.as_teardown(setups=cluster)
