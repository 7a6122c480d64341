"""The gate task in real Airflow (dag.test): the day after a worse model was promoted, its live feedback (from
logs stamped v2 that went through the real ingest) is in the gate's XCom and report, and the drop alert with
the rollback link reaches the SNS topic (moto)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from continuous_learning import storage

from tests.unit.helpers import DAYS, START, promote, world

pytestmark = pytest.mark.integration


def _scores(uri: str) -> str:
    """Paired evaluation scores where candidate and production tie (the gate rejects; not what is tested)."""
    rows = [
        {"interaction_id": f"i{n}", "agent": "a", "model": model, "reward": 0.5, "format_valid": True}
        for n in range(20)
        for model in ("candidate", "production")
    ]
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    storage.write_bytes(uri, buffer.getvalue())
    return uri


def _serialize(dag: Any) -> None:
    """Write a DAG defined here to the metadata DB, as the DAG processor does for the DAG folder's DAGs (dag.test
    runs only serialized DAGs)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
        session.flush()
        update_dag_parsing_results_in_db(
            "dags-folder", None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(), session=session
        )


def test_the_gate_task_shows_live_feedback_and_alerts_on_a_drop(
    airflow_db: str,
    storage_root: str,
    topic: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.sdk import DAG
    from continuous_learning.airflow.evaluation import EvaluationGateOperator
    from continuous_learning.config import load_settings

    monkeypatch.setenv("CL_MONITORING__MIN_INTERACTIONS", "100")
    monkeypatch.setenv("CL_MONITORING__MIN_THUMBS", "40")
    world(storage_root, v2_accuracy=0.3)
    promote(load_settings().storage.registry_uri, "v0", "v1", "v2")
    evaluation = {"scores_uri": _scores(f"{storage_root}/eval/scores.parquet"),
                  "mean_reward": {"candidate": 0.5, "production": 0.5}, "prompts": 20}  # fmt: skip
    with DAG("live_feedback_gate", schedule=None, start_date=datetime(2026, 11, 1, tzinfo=UTC)) as dag:
        EvaluationGateOperator(task_id="evaluation_gate", evaluation=evaluation, base={"version": "v2"})
    _serialize(dag)
    run_day = START + timedelta(days=DAYS)  # the gate's window ends the day before: the last day of logs
    run = dag.test(logical_date=datetime(run_day.year, run_day.month, run_day.day, 6, tzinfo=UTC))
    [ti] = run.get_task_instances()
    assert str(ti.state) == "success"
    result = ti.xcom_pull(task_ids="evaluation_gate")
    live = result["live_feedback"]
    assert live["verdict"] == "drop" and live["alerted"] is True and live["end"] == "2026-11-08"
    assert live["production"]["model_version"] == "v2" and live["previous"]["model_version"] == "v1"
    assert live["production"]["thumbs_up_rate"] < live["previous"]["thumbs_up_rate"] - 0.05
    page = storage.read_bytes(result["report"]["html"]).decode()
    assert (
        "<h2>Live feedback</h2>" in page and "<td>v2 (production)</td>" in page and "<td>0.500</td>" in page
    )
    [message] = topic.received()
    assert message["Subject"].endswith("feedback drop: roll v2 back to v1?")
    assert "/dags/model_rollback -> Trigger (target version 'previous' = v1" in message["Message"]
    assert json.loads(storage.read_bytes(result["report"]["json"]))["live_feedback"]["verdict"] == "drop"
