"""``continuous_training`` end to end in ``prod`` mode: HyperPod on moto, KubeRay on kmock, jobs on Ray.

Storage is a file:// folder (CL_STORAGE__ROOT) and the trainer uses its CPU engine (tiny settings);
everything else is the prod configuration: capacity scaled up and released, a RayCluster created,
waited for and deleted, and each trainer step a RayJob on it, waited for in (inline) triggers. The base
model is the user's (a small Hugging Face folder with a Hermes chat template): imported as v0, never built.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from continuous_learning import storage

from tests.integration.pipelines import TINY, run_day_then_training
from tests.kuberay.conftest import create_hyperpod, group_counts
from tests.user_models import make_user_model

pytestmark = pytest.mark.integration


def test_continuous_training_in_prod_mode(
    airflow_db: str, storage_root: str, kube: Any, aws: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from continuous_learning.models.chat_templates import load_shipped

    cluster = create_hyperpod(aws, count=0)
    user_model = make_user_model(tmp_path / "agent-model", chat_template=load_shipped("hermes"))
    settings = {
        "CL_MODEL__BASE_URI": f"file://{user_model}",
        **TINY, "CL_ENV": "prod", "CL_TRAINER__ENGINE": "cpu", "CL_TRAINER__THREADS": "1",
        "CL_TRAINER__LEARNING_RATE": "2e-4", "CL_INGEST__MAX_QUARANTINE_SHARE": "0.5",
        "CL_DATASET__VALIDATION_SHARE": "0.1", "CL_DATASET__TEST_SHARE": "0.2",
        "CL_HYPERPOD__CLUSTER_NAME": cluster, "CL_HYPERPOD__POLL_INTERVAL_S": "1",
        "CL_KUBERAY__WORKER_NODES": "2", "CL_KUBERAY__POLL_INTERVAL_S": "0.5",
        "CL_COMPUTE__CLUSTER_STARTUP_TIMEOUT_S": "60", "CL_COMPUTE__JOB_TIMEOUT_S": "600",
    }  # fmt: skip
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    states = run_day_then_training(storage_root, rows=160)
    for task in ("create_ray_cluster", "ensure_base_model", "train_candidate", "evaluate", "gate",
                 "delete_ray_cluster"):  # fmt: skip
        assert states[task] == "success", (task, states)

    state = kube.state()
    assert state["rayclusters"] == [], "a RayCluster outlived the teardown"
    assert state["rayjobs"] == {}, "RayJobs outlived the teardown"
    assert state["creates"] == {"rayclusters": 1, "rayjobs": 3}  # import-model, train, evaluate: once each
    assert group_counts(aws, cluster)[1] == 0, "HyperPod capacity was not released"  # scale-down requested

    registry = storage.join(storage_root, "registry")
    versions = sorted(p.name for p in Path(registry.removeprefix("file://"), "versions").iterdir())
    assert versions == ["v0.json", "v1.json"]
    run_dir = next(Path(storage.join(storage_root, "runs").removeprefix("file://")).iterdir())
    # day 0 is the user's model, imported with its lineage; nothing was built
    assert not (run_dir / "specs" / "bootstrap.json").exists()
    v0 = json.loads(Path(registry.removeprefix("file://"), "versions", "v0.json").read_text())
    assert v0["lineage"]["kind"] == "import" and v0["lineage"]["source_uri"] == f"file://{user_model}"
    assert (
        v0["lineage"]["architecture"] == "Qwen2ForCausalLM" and v0["lineage"]["tool_call_format"] == "hermes"
    )
    assert v0["lineage"]["files"]["model.safetensors"]
    v1 = json.loads(Path(registry.removeprefix("file://"), "versions", "v1.json").read_text())
    assert v1["parent_version"] == "v0" and v1["lineage"]["base_model_uri"] == v0["model_uri"]
    spec = json.loads((run_dir / "specs" / "train.json").read_text())
    assert spec["resources"]["nnodes"] == 2 and spec["resources"]["n_gpus_per_node"] == 8
    # the GPU of the HyperPod instance type (ml.p5.48xlarge) picks the trainer's tuned profile
    assert spec["resources"]["gpu_class"] == "h100"
    assert json.loads((run_dir / "train" / "result.json").read_text())["steps"] == 3
