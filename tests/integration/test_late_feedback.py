"""Late feedback: a day ingested before its corrections arrived is found, re-ingested with them,
and new reward data is announced once; backfill runs announce nothing."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from continuous_learning import storage
from continuous_learning.data.late_feedback import days_with_new_feedback
from continuous_learning.data.synthetic import generate_logs

from tests.conftest import REPO

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 14)


def _asset_events(dag_id: str, run_id: str) -> int:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.query(AssetEvent).filter_by(source_dag_id=dag_id, source_run_id=run_id).count()


def test_days_with_late_feedback_are_reprocessed_and_announced_once(
    airflow_db, storage_root: str, tmp_path
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    generate_logs(storage_root, DAY, 2, 120, seed=13)
    root = Path(storage_root.removeprefix("file://"))
    late_dir = root / "feedback" / f"dt={DAY + timedelta(days=1)}"
    held_back = tmp_path / "held-back"
    late_dir.rename(held_back)  # the next day's feedback has not arrived yet at ingest time

    ingest = bag.get_dag("interaction_ingest")
    first = ingest.test(logical_date=datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC))
    assert str(first.state) == "success"
    assert _asset_events("interaction_ingest", first.run_id) == 1
    data = storage.join(storage_root, "data")
    before = json.loads(
        storage.read_bytes(storage.partition_files(f"{data}/curated/dt={DAY}")["manifest.json"])
    )

    today = DAY + timedelta(days=2)
    assert days_with_new_feedback(data, storage.join(storage_root, "feedback"), today, 5) == []
    held_back.rename(late_dir)  # now the late corrections land
    stale = days_with_new_feedback(data, storage.join(storage_root, "feedback"), today, 5)
    assert [s.day for s in stale] == [DAY]

    reprocess = bag.get_dag("late_feedback_reprocess")
    run = reprocess.test(
        logical_date=datetime(today.year, today.month, today.day, 4, tzinfo=UTC) - timedelta(days=1)
    )
    states = {(ti.task_id, ti.map_index): str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "success", states
    assert states[("reingest_day", 0)] == "success" and ("reingest_day", 1) not in states
    assert _asset_events("late_feedback_reprocess", run.run_id) == 1  # one announcement for all days
    after = json.loads(
        storage.read_bytes(storage.partition_files(f"{data}/curated/dt={DAY}")["manifest.json"])
    )
    assert after["report"]["feedback_joined"] > before["report"]["feedback_joined"]
    assert days_with_new_feedback(data, storage.join(storage_root, "feedback"), today, 5) == []


def test_backfill_runs_do_not_announce() -> None:
    from airflow.sdk.exceptions import AirflowSkipException
    from continuous_learning.airflow.ingest import AnnounceRewardPartitionsOperator

    operator = AnnounceRewardPartitionsOperator(task_id="announce")
    with pytest.raises(AirflowSkipException, match="backfill run: not announcing"):
        operator.execute({"dag_run": SimpleNamespace(run_type="backfill")})  # type: ignore[arg-type]
    operator.execute({"dag_run": SimpleNamespace(run_type="scheduled")})  # type: ignore[arg-type]
