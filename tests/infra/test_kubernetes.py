"""Our Helm chart: helm lint, helm template, kubernetes-validate (core kinds) and the KubeRay CRD
schemas (ray.io kinds); the pinned third-party charts; the checked-in rendered manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.infra.conftest import CHART, HELM, INFRA, INFRA_PY, KUBERNETES_VALIDATE, require, require_crds, run
from tests.infra.helpers import docs, render

VALIDATE_RAY = INFRA / "checks" / "validate_ray.py"
VARIANTS = {
    "default": [],
    "ephemeral-job": ["--set", "rayJob.ephemeralCluster=true", "--set", "rayCluster.enabled=false"],
    "mwaa-group": ["--set", "rbac.airflowGroups={continuous-learning-airflow}", "--set", "fsx.enabled=false"],
}


def test_helm_lint() -> None:
    result = run(require(HELM), "lint", "--strict", CHART)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_manifests_validate(variant: str, tmp_path: Path) -> None:
    rendered = docs(render(*VARIANTS[variant]))
    core = [d for d in rendered if not d["apiVersion"].startswith("ray.io/")]
    ray = [d for d in rendered if d["apiVersion"].startswith("ray.io/")]
    assert core and ray
    (tmp_path / "core.yaml").write_text(yaml.safe_dump_all(core))

    result = run(require(KUBERNETES_VALIDATE), "-k", "1.32.0", "--strict", tmp_path / "core.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(core)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_ray_manifests_match_kuberays_crds(variant: str, tmp_path: Path) -> None:
    crds = require_crds()
    ray = [d for d in docs(render(*VARIANTS[variant])) if d["apiVersion"].startswith("ray.io/")]
    assert ray
    (tmp_path / "ray.yaml").write_text(yaml.safe_dump_all(ray))
    result = run(require(INFRA_PY), VALIDATE_RAY, crds, tmp_path / "ray.yaml")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 0, lines
    assert len(lines) == len(ray)


def test_crd_validation_rejects_unknown_and_missing_fields(tmp_path: Path) -> None:
    crds = require_crds()
    ray = [d for d in docs(render()) if d["kind"] == "RayCluster"]
    worker = ray[0]["spec"]["workerGroupSpecs"][0]
    worker["replicaz"] = worker.pop("replicas")
    del ray[0]["spec"]["headGroupSpec"]["template"]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump_all(ray))
    result = run(require(INFRA_PY), VALIDATE_RAY, crds, tmp_path / "bad.yaml")
    assert result.returncode == 1
    errors = " ".join(json.loads(result.stdout.splitlines()[0])["errors"])
    assert "replicaz" in errors and "template" in errors


def test_kubernetes_validate_rejects_a_bad_core_manifest(tmp_path: Path) -> None:
    role = next(d for d in docs(render()) if d["kind"] == "Role")
    role["rules"][0]["verbz"] = role["rules"][0].pop("verbs")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(role))
    result = run(require(KUBERNETES_VALIDATE), "-k", "1.32.0", "--strict", tmp_path / "bad.yaml")
    assert result.returncode != 0


def test_airflow_rbac_is_exactly_what_the_pipeline_needs() -> None:
    rendered = docs(render())
    role = next(d for d in rendered if d["kind"] == "Role")
    assert role["metadata"]["namespace"] == "continuous-learning"
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules[(("ray.io",), ("rayclusters", "rayjobs"))] == {
        "create",
        "get",
        "list",
        "watch",
        "patch",
        "delete",
    }
    assert rules[(("",), ("pods", "pods/log"))] == {"get", "list", "watch"}
    assert rules[(("",), ("services/proxy",))] == {"get"}  # the driver log, through the head service
    assert all("*" not in verbs for verbs in rules.values())
    assert not any(d["kind"] in ("ClusterRole", "ClusterRoleBinding") for d in rendered)
    binding = next(d for d in rendered if d["kind"] == "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert {(s["kind"], s["name"], s.get("namespace")) for s in binding["subjects"]} == {
        ("ServiceAccount", "airflow-worker", "airflow"),
        ("ServiceAccount", "airflow-triggerer", "airflow"),
        ("ServiceAccount", "airflow-scheduler", "airflow"),
        ("Group", "continuous-learning-airflow", None),  # Airflow's IAM role (EKS access entry, Terraform)
    }


@pytest.mark.parametrize("variant", ["default", "ephemeral-job"])
def test_gpu_workers_target_healthy_hyperpod_nodes(variant: str) -> None:
    rendered = docs(render(*VARIANTS[variant]))
    specs = [d["spec"] for d in rendered if d["kind"] == "RayCluster"]
    specs += [
        d["spec"]["rayClusterSpec"]
        for d in rendered
        if d["kind"] == "RayJob" and "rayClusterSpec" in d["spec"]
    ]
    assert len(specs) == 1
    pod = specs[0]["workerGroupSpecs"][0]["template"]["spec"]
    assert pod["nodeSelector"] == {
        "sagemaker.amazonaws.com/instance-group-name": "gpu-workers",
        "sagemaker.amazonaws.com/node-health-status": "Schedulable",
    }
    assert pod["serviceAccountName"] == "ray-training"
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert container["resources"]["limits"]["vpc.amazonaws.com/efa"] == 32
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["FI_PROVIDER"] == "efa" and env["FI_EFA_USE_DEVICE_RDMA"] == "1"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert volumes["fsx"]["persistentVolumeClaim"]["claimName"] == "fsx-lustre-claim"
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/dev/shm", "/fsx"}


def test_checked_in_manifests_match_the_chart() -> None:
    checked_in = docs((INFRA / "k8s" / "continuous-learning.yaml").read_text())
    assert checked_in == docs(render())


def test_third_party_charts_are_pinned() -> None:
    charts = yaml.safe_load((INFRA / "helm" / "charts.yaml").read_text())["charts"]
    assert {c["name"] for c in charts} >= {
        "kuberay-operator",
        "nvidia-device-plugin",
        "aws-efa-k8s-device-plugin",
    }
    for chart in charts:
        assert chart["version"].lstrip("v").count(".") == 2 and "*" not in chart["version"], chart
        values = yaml.safe_load((INFRA / "helm" / chart["values"]).read_text())
        assert isinstance(values, dict) and values, chart["values"]


def test_the_kuberay_chart_matches_the_crds_we_validate_against() -> None:
    crds = require_crds()
    charts = yaml.safe_load((INFRA / "helm" / "charts.yaml").read_text())["charts"]
    kuberay = next(c for c in charts if c["name"] == "kuberay-operator")
    readme = crds / "README.md"
    if not readme.is_file():
        pytest.skip(
            f"{crds} has no README.md naming its KubeRay release: the chart/CRD version check is skipped"
        )
    assert f"v{kuberay['version']}" in readme.read_text()
