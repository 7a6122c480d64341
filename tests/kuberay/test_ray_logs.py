"""Ray's logs outlive a KubeRay cluster: prod's settings render a Fluent Bit sidecar into every Ray pod,
sharing Ray's /tmp/ray, shipping to Terraform's CloudWatch log group; valid against the built-in schema
and KubeRay's own CRDs (where provided: ``real_crds``); nothing added without a log group."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from continuous_learning.compute import crd_schemas, kuberay
from continuous_learning.compute.kuberay_manifests import cluster_spec_from_settings
from continuous_learning.compute.ray_logs import CONTAINER, RAY_TMP, VOLUME
from continuous_learning.config import load_settings

from tests.conftest import REPO

LABELS = kuberay.run_labels("continuous_training", "scheduled__2026-11-11T06:00:00+00:00", None)


def _pods(manifest: dict) -> list[dict]:
    spec = manifest["spec"]
    return [
        spec["headGroupSpec"]["template"]["spec"],
        *[w["template"]["spec"] for w in spec["workerGroupSpecs"]],
    ]


def _manifest(overrides: dict | None = None) -> dict:
    settings = load_settings("prod", overrides)
    return kuberay.render_raycluster(
        cluster_spec_from_settings(settings, "continuous-training-0123456789ab", LABELS, {})
    )


def test_prod_pods_ship_ray_logs_to_the_terraform_log_group() -> None:
    manifest = _manifest()
    assert crd_schemas.builtin_errors(manifest) == []
    kuberay.validate_manifest(manifest)
    for pod in _pods(manifest):
        ray, shipper = pod["containers"]
        assert shipper["name"] == CONTAINER and shipper["image"].startswith(
            "public.ecr.aws/aws-observability/"
        )
        assert {"name": VOLUME, "mountPath": RAY_TMP} in ray["volumeMounts"]
        assert {"name": VOLUME, "mountPath": RAY_TMP, "readOnly": True} in shipper["volumeMounts"]
        assert {"name": VOLUME, "emptyDir": {}} in pod["volumes"]
        command = shipper["command"][-1]
        assert "log_group_name=/continuous-learning/ray" in command and "auto_create_group=false" in command
        assert f"path={RAY_TMP}/session_latest/logs/*.log" in command and "-o cloudwatch_logs" in command
        assert "log_stream_prefix=${RAY_CLUSTER}/${POD_NAME}/" in command
        assert pod["serviceAccountName"] == "ray-training"  # its Pod Identity role may write the group
    # the group is the one Terraform creates: /<name>/ray with the default name
    main = (REPO / "infra/terraform/envs/prod/main.tf").read_text()
    assert re.search(r'^\s*ray\s*=\s*"/\$\{var\.name\}/ray"$', main, re.M)
    assert re.search(
        r'variable "name" \{[^}]*default\s*=\s*"continuous-learning"',
        (REPO / "infra/terraform/envs/prod/variables.tf").read_text(),
    )


def test_real_crds_take_the_sidecar(real_crds: Path) -> None:
    assert crd_schemas.crd_errors(_manifest(), real_crds) == []


def test_without_a_log_group_nothing_is_added() -> None:
    manifest = _manifest({"kuberay.log_group": None})
    for pod in _pods(manifest):
        assert [c["name"] for c in pod["containers"]] in (["ray-head"], ["ray-worker"])
        assert all(v["name"] != VOLUME for v in pod["volumes"])


@pytest.mark.parametrize("bad", ["no spaces allowed", "x" * 513])
def test_a_bad_log_group_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="log_group"):
        _manifest({"kuberay.log_group": bad})
