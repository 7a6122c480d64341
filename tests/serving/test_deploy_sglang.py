"""deploy_production to an SGLang Deployment, in real Airflow (dag.test, triggers inline) against the
Kubernetes emulator (kmock + a scripted Deployment controller): created and ready, rolled to a new
version, a retry that changes nothing, a rollout that never gets ready rolled back by itself, and a LoRA
version loaded into the running pods without a restart."""

from __future__ import annotations

from typing import Any

import pytest
from continuous_learning import storage
from continuous_learning.registry import ModelRegistry

from tests.conftest import REPO
from tests.kuberay.conftest import KubeEmulator

pytestmark = pytest.mark.integration
NAME = "agent-sglang"


def _states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


@pytest.fixture
def sglang_target(
    serving_kube: KubeEmulator, storage_root: str, monkeypatch: pytest.MonkeyPatch
) -> ModelRegistry:
    for key, value in {
        "CL_SERVING__TARGET": "sglang", "CL_SERVING__DEFERRABLE": "true",
        "CL_SERVING__SGLANG__POLL_INTERVAL_S": "0.2", "CL_SERVING__SGLANG__SHARED_CLAIM": "fsx-claim",
        "CL_SERVING__SGLANG__DEPLOYMENT_NAME": NAME,
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    registry = ModelRegistry(storage.join(storage_root, "registry"))
    for i in range(3):
        registry.register(f"s3://models/agent/v{i}/", f"run-{i}", None, None)
    lora = {
        "base_model_uri": "s3://models/agent/v1/",
        "lora": {"adapter_uri": "/fsx/adapters/v3", "rank": 16},
    }
    registry.register("s3://models/agent/v3-merged/", "run-3", "v1", None, lineage=lora)
    registry.promote("v0", "bootstrap", None, expected_revision=0)
    return registry


def test_promoted_model_reaches_the_deployment_and_a_rollout_that_never_gets_ready_rolls_back(
    airflow_db: str, sglang_target: ModelRegistry, serving_kube: KubeEmulator
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    registry = sglang_target
    dag = DagBag(dag_folder=str(REPO / "dags")).get_dag("deploy_production")

    first = dag.test()
    assert _states(first) == {
        "resolve_model": "success",
        "deploy_sagemaker": "skipped",
        "deploy_sglang": "success",
    }
    deployment = serving_kube.state()["deployments"][NAME]
    assert deployment["version"] == "v0" and deployment["status"]["readyReplicas"] == 1

    registry.promote("v1", "gate: better", "run-1", expected_revision=1)
    second = dag.test()
    assert _states(second)["deploy_sglang"] == "success"
    deployment = serving_kube.state()["deployments"][NAME]
    assert (deployment["version"], deployment["generation"]) == ("v1", 2)
    assert deployment["status"]["updatedReplicas"] == deployment["status"]["readyReplicas"] == 1

    again = dag.test()  # a retry of a rollout already done: nothing applied
    assert _states(again)["deploy_sglang"] == "success"
    assert serving_kube.state()["deployments"][NAME]["generation"] == 2

    registry.promote("v2", "gate: better still", "run-2", expected_revision=2)
    serving_kube.configure(never_ready_versions=["v2"], deadline_s=1.0)
    failing = dag.test()
    assert _states(failing)["deploy_sglang"] == "failed"
    deployment = serving_kube.state()["deployments"][NAME]
    assert deployment["version"] == "v1"  # back on the template it replaced
    assert deployment["generation"] == 4  # rolled to v2 (3), back to v1 (4)

    # the LoRA version on v1's base: loaded into the running pods, the pod template untouched
    serving_kube.configure(never_ready_versions=[])
    registry.rollback("v1", "v2 never got ready", None)
    assert _states(dag.test())["deploy_sglang"] == "success"  # v1 again at revision 4 (a new template rev)
    before = serving_kube.state()["deployments"][NAME]["generation"]
    registry.promote(
        "v3", "gate: LoRA better", "run-3", expected_revision=registry.alias("production").revision
    )
    assert _states(dag.test())["deploy_sglang"] == "success"
    state = serving_kube.state()
    assert state["deployments"][NAME]["generation"] == before  # no restart
    posts = [p for p in state["pod_posts"] if p["path"] == "load_lora_adapter"]
    assert [p["body"] for p in posts] == [{"lora_name": "v3", "lora_path": "/fsx/adapters/v3"}]
    assert state["deployments"][NAME]["annotations"]["continuous-learning.io/lora-version"].startswith("v3@")
