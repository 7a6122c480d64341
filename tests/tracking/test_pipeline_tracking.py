"""The local pipeline (real Airflow, dag.test, local Ray, the CPU engine) with the experiment tracker: a
run appears in a real MLflow server with its params, TRL's per-step metrics, the gate's decision and the
run report; the registry version names the MLflow run. With tracking off, the server receives nothing."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from continuous_learning import storage
from continuous_learning.data.synthetic import generate_logs
from mlflow import MlflowClient

from tests.integration.pipelines import TINY, task_states
from tests.tracking.server import needs_mlflow_server

pytestmark = [pytest.mark.integration, needs_mlflow_server]
DAY = date(2026, 11, 10)


def _one_day(dags: Any, storage_root: str, monkeypatch: pytest.MonkeyPatch, tracking: dict[str, str]) -> Any:
    for key, value in {**TINY, **tracking}.items():
        monkeypatch.setenv(key, value)
    generate_logs(storage_root, DAY, 1, 160, seed=21)
    ingest = dags.get_dag("interaction_ingest").test(
        logical_date=datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    )
    assert str(ingest.state) == "success", task_states(ingest)
    run_date = datetime(DAY.year, DAY.month, DAY.day, 6, tzinfo=UTC) + timedelta(days=1)
    run = dags.get_dag("continuous_training").test(logical_date=run_date)
    assert str(run.state) == "success", task_states(run)
    assert task_states(run)["gate"] == "success"
    return run


def test_a_run_appears_in_mlflow(
    dags: Any, storage_root: str, monkeypatch: pytest.MonkeyPatch, mlflow_url: str
) -> None:
    experiment = "cl-pipeline-on"
    run = _one_day(dags, storage_root, monkeypatch, {
        "CL_TRACKING__ENABLED": "true", "CL_TRACKING__TRACKING_URI": mlflow_url, "CL_TRACKING__EXPERIMENT": experiment,
    })  # fmt: skip
    client = MlflowClient(tracking_uri=mlflow_url)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    [tracked] = client.search_runs([found.experiment_id])
    mlflow_run = tracked.info.run_id
    assert (
        tracked.info.status == "FINISHED"
        and tracked.data.tags["cl.run_id"] == f"continuous_training__{run.run_id}"
    )
    params = tracked.data.params
    assert (
        params["cl.engine"] == "cpu"
        and params["cl.hp.max_steps"] == "3"
        and params["cl.base_model_version"] == "v0"
    )
    # per-step metrics from TRL's own MLflow callback: one point per step, and its end-of-training summary
    rewards = client.get_metric_history(mlflow_run, "reward")
    assert sorted(m.step for m in rewards) == [1, 2, 3]
    assert "train_runtime" in tracked.data.metrics, sorted(tracked.data.metrics)
    assert "result.reward_last" in tracked.data.metrics
    # the gate: decision, the overall interval, the per-slice ones
    gate = json.loads(
        storage.read_bytes(storage.join(storage_root, "runs", _run_folder(storage_root), "gate.json"))
    )
    metrics = tracked.data.metrics
    assert metrics["gate.promote"] == (1.0 if gate["promote"] else 0.0)
    assert tracked.data.tags["cl.gate"] == ("promote" if gate["promote"] else "reject")
    if gate["overall"] is not None:
        assert metrics["gate.delta.low"] == pytest.approx(gate["overall"]["low"])
        assert metrics["gate.delta.high"] == pytest.approx(gate["overall"]["high"])
    # the run report, and the decision document, as artifacts
    paths = {a.path for a in client.list_artifacts(mlflow_run, "report")}
    assert paths == {"report/report.html", "report/report.json"}
    assert [a.path for a in client.list_artifacts(mlflow_run, "gate")] == ["gate/decision.json"]
    # the registry version links to the run
    v1 = storage.read_json(storage.join(storage_root, "registry", "versions", "v1.json"))
    assert v1["lineage"]["mlflow_run_id"] == mlflow_run
    assert tracked.data.tags["cl.candidate_version"] == "v1"


def test_tracking_off_sends_nothing(
    dags: Any, storage_root: str, monkeypatch: pytest.MonkeyPatch, mlflow_url: str
) -> None:
    client = MlflowClient(tracking_uri=mlflow_url)
    before = {e.name for e in client.search_experiments()}
    _one_day(dags, storage_root, monkeypatch, {
        "CL_TRACKING__ENABLED": "false", "CL_TRACKING__TRACKING_URI": mlflow_url, "CL_TRACKING__EXPERIMENT": "cl-off",
    })  # fmt: skip
    assert {e.name for e in client.search_experiments()} == before
    assert client.get_experiment_by_name("cl-off") is None
    spec = storage.read_json(
        storage.join(storage_root, "runs", _run_folder(storage_root), "specs", "train.json")
    )
    assert spec["tracking"] is None
    v1 = storage.read_json(storage.join(storage_root, "registry", "versions", "v1.json"))
    assert "mlflow_run_id" not in v1["lineage"]
    # the Ray head's logs outlived it: the training job's driver log (the trainer's output) is in the run's folder
    logs = Path(
        storage.join(storage_root, "runs", _run_folder(storage_root), "logs", "ray").removeprefix("file://")
    )
    drivers = sorted(logs.glob("session_*/logs/job-driver-*train*.log"))
    assert drivers, sorted(str(p.relative_to(logs)) for p in logs.rglob("*"))[:40]
    assert drivers[0].stat().st_size > 0


def _run_folder(storage_root: str) -> str:
    [folder] = Path(storage.join(storage_root, "runs").removeprefix("file://")).iterdir()
    return folder.name
