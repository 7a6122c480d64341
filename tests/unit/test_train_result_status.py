"""The training task takes a stopped run's merged checkpoint as a candidate; a failed run fails the task."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from continuous_learning.config import load_settings
from continuous_learning.contracts import DatasetRef, RunSpec, TrainResult, result_uri
from continuous_learning.registry import ModelRegistry
from continuous_learning.training import write_run_spec

DAG, RUN = "continuous_training", "manual__2026-11-24"


def _train_task(tmp_path, monkeypatch: pytest.MonkeyPatch, stop_reason: str | None, failed: bool = False):
    from continuous_learning.airflow.training import TrainCandidateOperator

    monkeypatch.setenv("CL_HOME", str(tmp_path))
    monkeypatch.setenv("CL_ENV", "local")
    settings = load_settings("local")
    uri = f"file://{tmp_path}/ds"
    dataset = {
        "dataset_id": "d1",
        "train_uri": uri,
        "validation_uri": uri,
        "test_uri": uri,
        "manifest_uri": uri,
    }
    registry = ModelRegistry(settings.storage.registry_uri)
    base = registry.register(f"file://{tmp_path}/v0", "onboarding", None, "d0")
    spec = RunSpec.read(
        write_run_spec(settings, DatasetRef.of(dataset), base.model_uri, base.version, f"{DAG}__{RUN}")
    )
    result = TrainResult.succeeded(
        spec, model_uri=f"file://{tmp_path}/merged", steps=3, metrics={"reward_last": 0.6}, history=[],
        versions={}, started_at=datetime.now(UTC), stop_reason=stop_reason,
    )  # fmt: skip
    if failed:
        result = result.model_copy(update={"status": "failed", "model_uri": None, "error": "OOM at step 2"})
    result.write(result_uri(spec.output_uri))
    task = TrainCandidateOperator(
        task_id="train",
        cluster={},
        dataset=dataset,
        base={"version": base.version, "model_uri": base.model_uri},
    )
    context = {"dag": SimpleNamespace(dag_id=DAG), "run_id": RUN, "params": {}}
    return task, context, registry


def test_a_stopped_run_becomes_the_candidate(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    task, context, registry = _train_task(tmp_path, monkeypatch, "time limit 3000 s reached at step 3")
    task.job_succeeded(context)
    candidate = registry.alias("candidate")
    assert candidate is not None
    entry = registry.get(candidate.version)
    assert entry.model_uri.endswith("/merged")
    assert entry.lineage["status"] == "stopped"


def test_a_failed_run_fails_the_task(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    task, context, registry = _train_task(tmp_path, monkeypatch, None, failed=True)
    with pytest.raises(RuntimeError, match="OOM at step 2"):
        task.job_succeeded(context)
    assert registry.alias("candidate") is None
