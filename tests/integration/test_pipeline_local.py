"""Both DAGs for one day, in real Airflow (dag.test), on the local backends with tiny settings."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
from continuous_learning import storage
from continuous_learning.data.synthetic import generate_logs

from tests.conftest import REPO
from tests.integration.pipelines import DAY, TINY, task_states

pytestmark = pytest.mark.integration


def _ray_pids() -> set[int]:
    pids = set()
    for proc in psutil.process_iter(["cmdline"]):
        if any("/tmp/clray-" in part for part in proc.info["cmdline"] or []):
            pids.add(proc.pid)
    return pids


@pytest.fixture
def dags(airflow_db: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag


def test_one_day_through_both_dags(dags, storage_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in TINY.items():
        monkeypatch.setenv(key, value)
    generate_logs(storage_root, DAY, 1, 160, seed=21)
    ray_before = _ray_pids()

    ingest_run = dags.get_dag("interaction_ingest").test(
        logical_date=datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    )
    assert str(ingest_run.state) == "success", task_states(ingest_run)
    data = storage.join(storage_root, "data")
    curated = storage.partition_files(storage.join(data, "curated", f"dt={DAY}"))
    manifest = json.loads(storage.read_bytes(curated["manifest.json"]))["report"]
    assert manifest["read"] == manifest["accepted"] + manifest["duplicates"] + manifest["quarantined"]
    assert manifest["accepted"] > 140
    reward = storage.read_partition_pointer(storage.join(data, "reward", f"dt={DAY}"))
    assert reward is not None and reward["rows"] > 50

    run_date = datetime(DAY.year, DAY.month, DAY.day, 6, tzinfo=UTC) + timedelta(days=1)
    train_run = dags.get_dag("continuous_training").test(logical_date=run_date)
    states = task_states(train_run)
    assert str(train_run.state) == "success", states
    for task in ("assemble_dataset", "create_ray_cluster", "ensure_base_model", "train_candidate", "evaluate",
                 "gate", "delete_ray_cluster"):  # fmt: skip
        assert states[task] == "success", (task, states)
    assert states["approve_promotion"] == "skipped"  # approval is off by default: nothing waits
    assert states["promote"] in ("success", "skipped")

    registry = storage.join(storage_root, "registry")
    versions = sorted(p.name for p in Path(registry.removeprefix("file://"), "versions").iterdir())
    assert versions == ["v0.json", "v1.json"]
    v1 = json.loads(storage.read_bytes(storage.join(registry, "versions", "v1.json")))
    assert v1["parent_version"] == "v0" and v1["dataset_id"].startswith(f"{DAY}-")
    run_dirs = list(Path(storage.join(storage_root, "runs").removeprefix("file://")).iterdir())
    assert len(run_dirs) == 1
    run_dir = run_dirs[0]
    result = json.loads((run_dir / "train" / "result.json").read_text())
    assert result["steps"] == 3 and len(result["history"]) == 3
    assert (run_dir / "train" / "model" / "model.safetensors").exists()
    scores = pq.read_table(io.BytesIO((run_dir / "eval" / "scores.parquet").read_bytes()))
    assert set(scores.column("model").to_pylist()) == {"candidate", "production"}
    gate = json.loads((run_dir / "gate.json").read_text())
    assert isinstance(gate["promote"], bool) and gate["reasons"]
    production = sorted(Path(registry.removeprefix("file://"), "aliases", "production").iterdir())
    expected = "v1" if gate["promote"] else "v0"
    assert json.loads(production[-1].read_text())["version"] == expected
    assert _ray_pids() - ray_before == set(), "the Ray head outlived its teardown task"


def test_training_skips_with_reason_when_the_window_is_empty(dags, storage_root: str) -> None:
    run = dags.get_dag("continuous_training").test(logical_date=datetime(2026, 11, 20, 6, tzinfo=UTC))
    states = task_states(run)
    assert str(run.state) == "success"
    assert states["assemble_dataset"] == "skipped"
    assert states["create_ray_cluster"] == "skipped" and states["delete_ray_cluster"] == "skipped"
