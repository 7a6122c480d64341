"""Rendering, validation, capacity decisions and EKS access (no KubeRay controller needed).

Validation runs in two layers: the built-in schema and rules shipped in the package (always), and
KubeRay's own CRDs where they are provided (``CL_KUBERAY_CRDS``, or ``../shared/kuberay-crds`` beside the
clone: see conftest); the tests of the second layer skip, saying so, where they are not."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from continuous_learning.compute import crd_schemas, hyperpod, kuberay


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
    assert crd_schemas.builtin_errors(manifest) == []
    kuberay.validate_manifest(manifest)  # and KubeRay's CRDs where provided (CL_KUBERAY_CRDS)
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


def _jobs() -> dict[str, dict[str, Any]]:
    return {
        "on-cluster": kuberay.render_rayjob(
            name="j-a1", namespace="ns", entrypoint="python -m x", job_id="d--r--t-a1", env={"CL_ENV": "prod"},
            labels={}, cluster_name="c", active_deadline_s=100, startup_deadline_s=10,
        ),
        "ephemeral": kuberay.render_rayjob(name="j-a1", namespace="ns", entrypoint="x", job_id="j", env={},
                                           labels={}, cluster_spec=_spec(2)),
    }  # fmt: skip


def test_rayjob_manifests_are_valid_and_invalid_ones_are_refused() -> None:
    jobs = _jobs()
    on_cluster, ephemeral = jobs["on-cluster"], jobs["ephemeral"]
    for job in jobs.values():
        assert crd_schemas.builtin_errors(job) == []
        kuberay.validate_manifest(job)
    assert on_cluster["spec"]["clusterSelector"] == {"ray.io/cluster": "c"}
    assert json.loads(on_cluster["spec"]["runtimeEnvYAML"]) == {"env_vars": {"CL_ENV": "prod"}}
    assert ephemeral["spec"]["shutdownAfterJobFinishes"] is True
    bad = kuberay.render_raycluster(_spec(1))
    bad["spec"]["workerGroupSpecs"][0]["replicas"] = "two"
    with pytest.raises(kuberay.ManifestInvalid, match="replicas"):
        kuberay.validate_manifest(bad)
    with pytest.raises(ValueError):
        _spec(17)


def test_kuberay_validates_without_any_file_outside_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's Airflow worker has no CRD folder: the built-in layer alone validates, and refuses."""
    monkeypatch.delenv("CL_KUBERAY_CRDS", raising=False)
    assert kuberay.crd_directory() is None
    assert crd_schemas.SCHEMA_PATH.is_file() and crd_schemas.SCHEMA_PATH.is_relative_to(
        Path(kuberay.__file__).parent
    )
    for manifest in [kuberay.render_raycluster(_spec(2)), *_jobs().values()]:
        kuberay.validate_manifest(manifest)
    bad = kuberay.render_raycluster(_spec(1))
    bad["spec"]["workerGroupSpecs"][0]["replicaz"] = 1
    with pytest.raises(kuberay.ManifestInvalid, match=r"'replicaz' was unexpected\) \[built-in schema\]"):
        kuberay.validate_manifest(bad)


def _broken(change: str) -> dict[str, Any]:
    """A rendered manifest with one thing wrong (``change`` names it)."""
    if change.startswith("job:"):
        job = _jobs()["on-cluster" if change != "job:two-clusters" else "ephemeral"]
        spec = job["spec"]
        if change == "job:two-clusters":
            spec["clusterSelector"] = {"ray.io/cluster": "c"}
        elif change == "job:no-cluster":
            del spec["clusterSelector"]
        elif change == "job:shutdown-shared":
            spec["shutdownAfterJobFinishes"] = True
        elif change == "job:runtime-env":
            spec["runtimeEnvYAML"] = json.dumps({"env_vars": {"N": 1}})
        elif change == "job:mode":
            spec["submissionMode"] = "HttpMode"
        return job
    manifest = kuberay.render_raycluster(_spec(2))
    worker = manifest["spec"]["workerGroupSpecs"][0]
    pod = worker["template"]["spec"]
    container = pod["containers"][0]
    if change == "name":
        manifest["metadata"]["name"] = "Training_Cluster"
    elif change == "label":
        manifest["metadata"]["labels"]["continuous-learning.io/run-id"] = (
            "scheduled__2026-11-11T06:00:00+00:00"
        )
    elif change == "replicas":
        worker["replicas"] = 5
    elif change == "mount":
        container["volumeMounts"].append({"name": "scratch", "mountPath": "/scratch"})
    elif change == "gpu-request":
        container["resources"]["requests"]["nvidia.com/gpu"] = 4
    elif change == "memory":
        container["resources"]["requests"]["memory"] = "2000Gi"
    elif change == "quantity":
        container["resources"]["limits"]["memory"] = "1.8 TB"
    elif change == "num-gpus":
        worker["rayStartParams"]["num-gpus"] = "16"
    elif change == "groups":
        manifest["spec"]["workerGroupSpecs"].append(dict(worker))
    elif change == "pull-policy":
        container["imagePullPolicy"] = "IfMissing"
    return manifest


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("name", "metadata.name: 'Training_Cluster' does not match"),
        ("label", "continuous-learning.io/run-id"),
        ("replicas", "replicas: 5 is outside minReplicas..maxReplicas (2..2)"),
        ("mount", "no volume 'scratch' in the pod"),
        ("gpu-request", "nvidia.com/gpu requests (4) must equal limits (8)"),
        ("memory", "memory requests (2000Gi) exceed limits (1800Gi)"),
        ("quantity", "limits.memory: '1.8 TB' does not match"),
        ("num-gpus", "Ray would advertise 16 GPUs on a pod that has 8"),
        ("groups", "'gpu' is used by another worker group"),
        ("pull-policy", "imagePullPolicy: 'IfMissing' is not one of"),
        ("job:two-clusters", "give exactly one of clusterSelector"),
        ("job:no-cluster", "give exactly one of clusterSelector"),
        ("job:shutdown-shared", "shutdownAfterJobFinishes: only for the job's own cluster"),
        ("job:runtime-env", "env_vars must map names to strings"),
        ("job:mode", "submissionMode: 'HttpMode' is not one of"),
    ],
)
def test_builtin_rules_refuse_what_the_api_server_or_kuberay_would(change: str, message: str) -> None:
    errors = crd_schemas.builtin_errors(_broken(change))
    assert errors and any(message in e for e in errors), errors


@pytest.mark.parametrize(
    ("quantity", "value"),
    [(8, "8"), ("500m", "0.5"), ("32Gi", str(32 * 2**30)), ("1e3", "1000"), ("1.5k", "1500"), ("2 Gi", None)],
)
def test_quantities(quantity: Any, value: str | None) -> None:
    parsed = crd_schemas.parse_quantity(quantity)
    assert (parsed if parsed is None else Decimal(value or "0")) == parsed


def test_crds_setting_that_points_nowhere_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CL_KUBERAY_CRDS", str(tmp_path))
    with pytest.raises(
        kuberay.KubeRayError, match=r"ray.io_rayclusters.yaml and ray.io_rayjobs.yaml not found"
    ):
        kuberay.crd_directory()


# ------------------------------------------------------------------- against KubeRay's own CRDs (skip without)


@pytest.mark.parametrize("workers", [1, 16])
def test_rendered_manifests_pass_kuberays_crds(real_crds: Path, workers: int) -> None:
    for manifest in [kuberay.render_raycluster(_spec(workers)), *_jobs().values()]:
        assert crd_schemas.crd_errors(manifest, real_crds) == []
    bad = kuberay.render_raycluster(_spec(1))
    bad["spec"]["workerGroupSpecs"][0]["replicaz"] = bad["spec"]["workerGroupSpecs"][0].pop("replicas")
    del bad["spec"]["headGroupSpec"]["template"]
    errors = " ".join(crd_schemas.crd_errors(bad, real_crds))
    assert "replicaz" in errors and "template" in errors


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = crd_schemas.builtin_schema()["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _types(schema: dict[str, Any]) -> set[str] | None:
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        return {"number" if k == "integer" else k for k in kinds}
    values = schema.get("enum", [schema["const"]] if "const" in schema else None)
    if values is not None:
        return {{bool: "boolean", int: "number", str: "string"}[type(v)] for v in values}
    if "anyOf" in schema:
        branches = [_types(b) for b in schema["anyOf"]]
        return None if None in branches else set().union(*branches)  # type: ignore[arg-type]
    return None


def _subset_problems(ours: dict[str, Any], theirs: dict[str, Any], path: str) -> list[str]:
    """Where the built-in schema allows what KubeRay's (strict) CRD schema would not."""
    ours = _resolve(ours)
    problems = []
    mine, kuberays = _types(ours), _types(theirs)
    if mine is not None and kuberays is not None and not mine <= kuberays:
        problems.append(f"{path}: type {sorted(mine)} here, {sorted(kuberays)} in KubeRay's CRD")
    for branch in ours.get("oneOf", []) + ours.get("anyOf", []):
        if "properties" in branch or "items" in branch:
            problems += _subset_problems(branch, theirs, path)
    if "properties" in ours:
        open_object = "properties" not in theirs and theirs.get("additionalProperties") is not False
        if open_object or theirs.get("x-kubernetes-preserve-unknown-fields"):
            return problems
        missing = set(theirs.get("required", [])) - set(ours.get("required", []))
        if missing:
            problems.append(f"{path}: KubeRay's CRD requires {sorted(missing)}, the built-in schema does not")
        for key, sub in ours["properties"].items():
            if key not in theirs.get("properties", {}):
                problems.append(f"{path}.{key}: not a field of KubeRay's CRD")
            else:
                problems += _subset_problems(sub, theirs["properties"][key], f"{path}.{key}")
    if isinstance(ours.get("items"), dict) and isinstance(theirs.get("items"), dict):
        problems += _subset_problems(ours["items"], theirs["items"], f"{path}[]")
    if isinstance(ours.get("additionalProperties"), dict) and isinstance(
        theirs.get("additionalProperties"), dict
    ):
        problems += _subset_problems(
            ours["additionalProperties"], theirs["additionalProperties"], f"{path}.*"
        )
    return problems


@pytest.mark.parametrize("kind", crd_schemas.KINDS)
def test_builtin_schema_is_a_strict_subset_of_kuberays_crd(real_crds: Path, kind: str) -> None:
    """Every field the built-in schema allows exists in KubeRay's CRD with a compatible type, and every
    field KubeRay requires, it requires: passing the built-in layer never means failing KubeRay's."""
    ours = {"$ref": f"#/$defs/{kind}"}
    assert _subset_problems(ours, crd_schemas.crd_schema(kind, str(real_crds)), kind) == []


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
