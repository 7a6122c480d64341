"""The model_rollback DAG in real Airflow: a valid rollback moves production; a bad one changes nothing."""

from __future__ import annotations

import pytest
from continuous_learning import storage
from continuous_learning.registry import ModelRegistry

from tests.conftest import REPO

pytestmark = pytest.mark.integration


def _registry(storage_root: str) -> ModelRegistry:
    registry = ModelRegistry(storage.join(storage_root, "registry"))
    for i in range(3):
        registry.register(f"file:///models/{i}", f"run-{i}", None, None)
    registry.promote("v0", "bootstrap", None, expected_revision=0)
    registry.promote("v1", "gate", None, expected_revision=1)
    return registry


def test_rollback_dag_moves_production_back_and_refuses_unknown_versions(
    airflow_db: str, storage_root: str
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    registry = _registry(storage_root)
    dag = DagBag(dag_folder=str(REPO / "dags")).get_dag("model_rollback")
    bad = dag.test(run_conf={"target_version": "v2", "reason": "try a never-served version"})
    assert str(bad.state) == "failed"
    assert registry.alias("production").version == "v1"  # nothing changed

    good = dag.test(run_conf={"target_version": "previous", "reason": "shop agent regression"})
    assert str(good.state) == "success"
    production = registry.alias("production")
    assert (production.version, production.previous_version) == ("v0", "v1")
    assert "shop agent regression" in production.reason
