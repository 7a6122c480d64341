"""Rendering, CRD validation, capacity decisions and EKS access (no KubeRay controller needed)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from continuous_learning.compute import hyperpod, kuberay


def _spec(workers: int, **extra: Any) -> kuberay.RayClusterSpec:
    return kuberay.RayClusterSpec(
        name="continuous-training-0123456789ab", namespace="continuous-learning", image="trainer:1",
        service_account="ray-training", fsx_claim="fsx-lustre-claim", shm_size="512Gi",
        workers=[kuberay.WorkerGroupSpec(instance_group="gpu-workers", replicas=workers, gpus_per_node=8,
                                         efa_per_node=32)],
        labels=kuberay.run_labels("continuous_training", "scheduled__2026-11-11T06:00:00+00:00", None), **extra,
    )  # fmt: skip


@pytest.mark.parametrize("workers", [1, 2, 8, 16])
def test_rendered_raycluster_is_valid_for_1_to_16_workers(workers: int) -> None:
    spec = _spec(workers)
    manifest = kuberay.render_raycluster(spec)
    kuberay.validate_manifest(manifest)
    worker = manifest["spec"]["workerGroupSpecs"][0]
    assert worker["replicas"] == worker["minReplicas"] == worker["maxReplicas"] == workers
    pod = worker["template"]["spec"]
    assert pod["nodeSelector"] == {
        "sagemaker.amazonaws.com/instance-group-name": "gpu-workers",
        "sagemaker.amazonaws.com/node-health-status": "Schedulable",
    }
    limits = pod["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == 8 and limits["vpc.amazonaws.com/efa"] == 32
    assert {v["name"] for v in pod["volumes"]} == {"dshm", "fsx"}
    assert pod["serviceAccountName"] == "ray-training"
    assert {e["name"] for e in pod["containers"][0]["env"]} >= {"FI_PROVIDER", "NCCL_NVLS_ENABLE"}
    assert (spec.nnodes, spec.n_gpus_per_node) == (workers, 8)
    labels = manifest["metadata"]["labels"]
    assert all(len(v) <= 63 for v in labels.values()) and labels["ray.io/cluster"] == spec.name


def test_rayjob_manifests_are_valid_and_invalid_ones_are_refused() -> None:
    on_cluster = kuberay.render_rayjob(
        name="j-a1", namespace="ns", entrypoint="python -m x", job_id="d--r--t-a1", env={"CL_ENV": "prod"},
        labels={}, cluster_name="c", active_deadline_s=100, startup_deadline_s=10,
    )  # fmt: skip
    kuberay.validate_manifest(on_cluster)
    assert on_cluster["spec"]["clusterSelector"] == {"ray.io/cluster": "c"}
    assert json.loads(on_cluster["spec"]["runtimeEnvYAML"]) == {"env_vars": {"CL_ENV": "prod"}}
    ephemeral = kuberay.render_rayjob(name="j-a1", namespace="ns", entrypoint="x", job_id="j", env={},
                                      labels={}, cluster_spec=_spec(2))  # fmt: skip
    kuberay.validate_manifest(ephemeral)
    assert ephemeral["spec"]["shutdownAfterJobFinishes"] is True
    bad = kuberay.render_raycluster(_spec(1))
    bad["spec"]["workerGroupSpecs"][0]["replicas"] = "two"
    with pytest.raises(kuberay.ManifestInvalid, match="replicas"):
        kuberay.validate_manifest(bad)
    with pytest.raises(ValueError):
        _spec(17)


def test_next_attempt_reattaches_to_running_and_succeeded_only() -> None:
    def job(attempt: int, status: str) -> dict[str, Any]:
        return {"metadata": {"labels": {f"{kuberay.LABEL_PREFIX}/attempt": str(attempt)}},
                "status": {"jobStatus": status}}  # fmt: skip

    assert kuberay.next_attempt([]) == (None, 1)
    assert kuberay.next_attempt([job(1, "RUNNING")])[1] == 1
    assert kuberay.next_attempt([job(1, "SUCCEEDED")])[0] is not None
    assert kuberay.next_attempt([job(1, "FAILED")]) == (None, 2)
    assert kuberay.next_attempt([job(1, "FAILED"), job(2, "STOPPED")]) == (None, 3)


def _describe(current: int, target: int, **group: Any) -> dict[str, Any]:
    return {"ClusterName": "hp", "ClusterStatus": "InService",
            "InstanceGroups": [{"InstanceGroupName": "gpu", "CurrentCount": current, "TargetCount": target,
                                "InstanceType": "ml.p5.48xlarge", **group}]}  # fmt: skip


def test_capacity_plans() -> None:
    assert hyperpod.plan_capacity(_describe(2, 2), "gpu", 2).action == "none"
    scale = hyperpod.plan_capacity(_describe(0, 0), "gpu", 2)
    assert (scale.action, scale.scale_to, scale.original_count) == ("scale", 2, 0)
    assert hyperpod.release_count(scale.as_dict(), 0) == 0
    assert hyperpod.plan_capacity(_describe(1, 2), "gpu", 2).action == "wait"  # scaling already
    managed = hyperpod.plan_capacity({**_describe(0, 0), "AutoScaling": {"Mode": "Enable"}}, "gpu", 2)
    assert managed.action == "wait" and hyperpod.release_count(managed.as_dict(), 0) is None
    reserved = hyperpod.plan_capacity(_describe(0, 0, TrainingPlanArn="arn:aws:sagemaker:tp/x"), "gpu", 2)
    assert reserved.action == "scale" and hyperpod.release_count(reserved.as_dict(), 0) is None
    request = hyperpod.update_request(_describe(0, 0, TrainingPlanArn="arn:tp"), "gpu", 4)
    assert request["InstanceGroups"][0] == {"InstanceGroupName": "gpu", "InstanceType": "ml.p5.48xlarge",
                                            "TrainingPlanArn": "arn:tp", "InstanceCount": 4}  # fmt: skip
    with pytest.raises(hyperpod.CapacityError, match="no instance group 'cpu'"):
        hyperpod.plan_capacity(_describe(0, 0), "cpu", 1)


@pytest.mark.parametrize(
    ("instance_type", "gpu_class"),
    [("ml.p5.48xlarge", "h100"), ("ml.p5en.48xlarge", "h200"), ("ml.p4d.24xlarge", "a100"),
     ("ml.c5.18xlarge", None), ("p5.48xlarge", None), (None, None)],
)  # fmt: skip
def test_gpu_class_from_the_instance_type(instance_type: str | None, gpu_class: str | None) -> None:
    assert hyperpod.gpu_class_of(instance_type) == gpu_class
    plan = hyperpod.plan_capacity(_describe(0, 0, InstanceType=instance_type), "gpu", 1)
    assert (plan.instance_type, plan.gpu_class) == (instance_type, gpu_class)


def test_eks_access_through_the_amazon_provider_token(moto_url: str, aws: Any) -> None:
    import boto3
    from continuous_learning.airflow.hooks import KubeRayHook

    eks = boto3.client("eks", endpoint_url=moto_url, region_name="us-east-1")
    eks.create_cluster(name="hyperpod-eks", roleArn="arn:aws:iam::123456789012:role/eks",
                       resourcesVpcConfig={"subnetIds": ["subnet-1"]})  # fmt: skip
    arn = eks.describe_cluster(name="hyperpod-eks")["cluster"]["arn"]
    client = KubeRayHook(eks_cluster_name=arn, region_name="us-east-1").get_conn()
    endpoint = eks.describe_cluster(name="hyperpod-eks")["cluster"]["endpoint"]
    assert client.configuration.host == endpoint.rstrip("/")
    token = client.configuration.api_key.get("BearerToken", "")
    assert token.startswith("Bearer k8s-aws-v1.")
