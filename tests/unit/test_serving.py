"""The serving hand-off's pure decisions: which event deploys, SageMaker's next step and requests, the
SGLang rollout plan, its readiness, and the merge patch that applies it."""

from __future__ import annotations

from typing import Any

import pytest
from continuous_learning.config_after_gate import SageMakerServingSettings, SGLangServingSettings
from continuous_learning.contracts import ContractError, ProductionModelEvent
from continuous_learning.serving import handoff, sagemaker, sglang


def _event(version: str = "v1", revision: int = 2, **kw: Any) -> ProductionModelEvent:
    return ProductionModelEvent(version=version, model_uri=f"s3://m/{version}/", revision=revision, **kw)


def test_the_newest_event_deploys_and_one_behind_the_alias_is_superseded() -> None:
    extras = [_event("v1", 2).model_dump(), _event("v2", 3).model_dump()]
    assert handoff.choose(extras, _event("v2", 3)).event == _event("v2", 3)
    stale = handoff.choose([_event("v1", 2).model_dump()], _event("v3", 4))
    assert stale.action == "skip" and "superseded by v3" in stale.message
    assert handoff.choose([], _event("v3", 4)).event == _event("v3", 4)  # manual run: current production
    assert handoff.choose([], None).action == "skip"
    with pytest.raises(ContractError):
        handoff.choose([{"version": "latest"}], None)


def test_sagemaker_names_steps_and_guardrails() -> None:
    long = "x" * 70
    assert len(sagemaker.resource_name(long, _event())) == 63
    assert sagemaker.resource_name("ep", _event()) == "ep-v1-r2"
    assert sagemaker.next_step(None, "ep-v1-r2") == "create"
    assert sagemaker.next_step({"EndpointStatus": "Updating"}, "ep-v1-r2") == "wait"
    assert (
        sagemaker.next_step({"EndpointStatus": "InService", "EndpointConfigName": "ep-v1-r2"}, "ep-v1-r2")
        == "done"
    )
    old = {"EndpointStatus": "InService", "EndpointConfigName": "ep-v0-r1"}
    assert sagemaker.next_step(old, "ep-v1-r2") == "update"
    assert sagemaker.next_step(old, "ep-v1-r2", updated=True) == "rolled_back"
    assert sagemaker.next_step({"EndpointStatus": "Failed"}, "ep-v1-r2") == "failed"
    assert "AutoRollbackConfiguration" not in sagemaker.deployment_config(SageMakerServingSettings())
    conf = SageMakerServingSettings(image="img", alarms=["a"], execution_role_arn="arn:aws:iam::1:role/r")
    assert sagemaker.deployment_config(conf)["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": "a"}]}
    packaged = sagemaker.create_model_request(conf, _event(sagemaker_model_package_arn="arn:pkg"))
    # the container knows which version it serves, to stamp it into the logs it writes
    assert packaged["PrimaryContainer"] == {
        "ModelPackageName": "arn:pkg",
        "Environment": {"CL_MODEL_VERSION": "v1"},
    }
    direct = sagemaker.create_model_request(conf, _event())
    assert direct["PrimaryContainer"]["Environment"] == {"CL_MODEL_VERSION": "v1"}
    assert sagemaker.firing([{"AlarmName": "a", "StateValue": "ALARM"}, {"AlarmName": "b", "StateValue": "ALARM"}],
                            ["a"]) == ["a"]  # fmt: skip
    with pytest.raises(ValueError, match="on S3"):
        sagemaker.container(conf, "file:///local/model")


def _ready(manifest: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    n = manifest["spec"]["replicas"]
    return {**manifest, "metadata": {**manifest["metadata"], "generation": generation},
            "status": {"observedGeneration": generation, "replicas": n, "updatedReplicas": n, "readyReplicas": n,
                       "availableReplicas": n}}  # fmt: skip


def test_sglang_plan_rolls_waits_and_hot_loads_lora() -> None:
    conf = SGLangServingSettings(shared_claim="fsx")
    created = sglang.plan(None, _event("v1", 2), conf)
    assert created.action == "create" and created.manifest is not None
    init = created.manifest["spec"]["template"]["spec"]["initContainers"][0]
    assert init["command"][-2:] == ["s3://m/v1/", "/models/v1"]
    live = _ready(created.manifest)
    assert sglang.plan(live, _event("v1", 2), conf).action == "wait"
    update = sglang.plan(live, _event("v2", 3), conf)
    assert update.action == "update" and update.manifest is not None
    assert sglang.rollback_template(update.manifest) == live["spec"]["template"]
    lora = _event("v3", 4, adapter_uri="/fsx/adapters/v3", base_model_uri="s3://m/v1/")
    assert sglang.plan(live, lora, conf).lora_request == {"lora_name": "v3", "lora_path": "/fsx/adapters/v3"}
    on_s3 = _event("v3", 4, adapter_uri="s3://m/v3/adapter", base_model_uri="s3://m/v1/")
    assert sglang.plan(live, on_s3, conf).action == "update"  # the pods cannot read it: roll the merged model
    other_base = _event("v3", 4, adapter_uri="/fsx/adapters/v3", base_model_uri="s3://m/v0/")
    assert sglang.plan(live, other_base, conf).action == "update"
    with pytest.raises(ValueError, match="shared_mount_path"):
        sglang.plan(None, ProductionModelEvent(version="v1", model_uri="file:///tmp/m", revision=1), conf)


def test_rollout_phase_is_kubectl_rollout_status() -> None:
    manifest = sglang.deployment_manifest(SGLangServingSettings(replicas=2), _event())
    assert sglang.rollout_phase(_ready(manifest)) == "ready"
    unobserved = _ready(manifest, 2)
    unobserved["status"] = {**unobserved["status"], "observedGeneration": 1}
    assert sglang.rollout_phase(unobserved) == "progressing"
    surge = _ready(manifest)
    surge["status"] = {**surge["status"], "replicas": 3}  # an old pod still there
    assert sglang.rollout_phase(surge) == "progressing"
    stuck = _ready(manifest)
    stuck["status"] = {
        **stuck["status"],
        "conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}],
    }
    assert sglang.rollout_phase(stuck) == "failed"


def test_merge_patch_removes_what_the_desired_lacks_and_replaces_lists() -> None:
    current = {"a": {"b": 1, "c": 2}, "l": [1, 2], "gone": True}
    desired = {"a": {"b": 1, "d": 3}, "l": [3]}
    assert sglang.merge_patch(current, desired) == {"a": {"d": 3, "c": None}, "l": [3], "gone": None}
