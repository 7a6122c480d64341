"""The local pipeline's shared pieces (tests/integration/test_pipeline_local.py and the tests that run the same
day elsewhere: MLflow tracking, prod mode, SmolLM2): tiny settings, a run's task states, one day through both
DAGs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from continuous_learning.data.synthetic import generate_logs

from tests.conftest import REPO

DAY = date(2026, 11, 10)
TINY = {
    "CL_TRAINER__MAX_STEPS": "3",
    "CL_TRAINER__WARM_START_STEPS": "15",
    "CL_TRAINER__PROMPTS_PER_STEP": "4",
    "CL_TRAINER__SAMPLES_PER_PROMPT": "2",
    "CL_TRAINER__MAX_COMPLETION_TOKENS": "24",
    "CL_DATASET__MIN_TRAIN_ROWS": "16",
    "CL_EVALUATION__MAX_PROMPTS": "16",
    "CL_EVALUATION__BOOTSTRAP_RESAMPLES": "200",
    "CL_COMPUTE__LOCAL_RAY_NUM_CPUS": "1",
}


def task_states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def run_day_then_training(storage_root: str, rows: int) -> dict[str, str]:
    """``rows`` synthetic logs for DAY through ``interaction_ingest``, then ``continuous_training`` the
    morning after, in real Airflow (dag.test) with the settings in the environment; both runs must succeed.
    Returns the training run's task states."""
    from airflow.dag_processing.dagbag import DagBag

    generate_logs(storage_root, DAY, 1, rows, seed=21)
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    ingest = bag.get_dag("interaction_ingest").test(
        logical_date=datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    )
    assert str(ingest.state) == "success", task_states(ingest)

    run_date = datetime(DAY.year, DAY.month, DAY.day, 6, tzinfo=UTC) + timedelta(days=1)
    run = bag.get_dag("continuous_training").test(logical_date=run_date)
    states = task_states(run)
    assert str(run.state) == "success", states
    return states
