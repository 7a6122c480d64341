"""Terraform formatting (terraform fmt) and structural security checks of the HCL (python-hcl2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.infra.conftest import INFRA, INFRA_PY, TERRAFORM, require, run
from tests.infra.helpers import TF, blocks, hcl

HCL_CHECKS = INFRA / "checks" / "hcl_checks.py"


def hcl_findings(directory: Path) -> list[dict]:
    result = run(require(INFRA_PY), HCL_CHECKS, directory)
    findings = json.loads(result.stdout)
    assert result.returncode == (1 if findings else 0), result.stderr[-2000:]
    return findings


def test_terraform_fmt_is_clean() -> None:
    result = run(require(TERRAFORM), "fmt", "-check", "-recursive", "-diff", TF)
    assert result.returncode == 0, result.stdout + result.stderr


def test_terraform_fmt_catches_misformatting(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text('variable "x" {\ndescription="x"\n  type = string\n}\n')
    assert run(require(TERRAFORM), "fmt", "-check", tmp_path).returncode != 0


def test_hcl_structure_is_clean() -> None:
    assert hcl_findings(TF) == []


def test_every_module_has_the_standard_files_and_a_pinned_provider() -> None:
    modules = sorted(p for p in (TF / "modules").iterdir() if p.is_dir())
    assert {m.name for m in modules} >= {
        "network",
        "security_groups",
        "eks",
        "hyperpod",
        "storage",
        "ecr",
        "iam",
        "kms",
    }
    for module in [*modules, TF / "envs" / "prod"]:
        for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf"):
            assert (module / name).is_file(), f"{module.name}/{name}"
        assert 'version = "~> 6.' in (module / "versions.tf").read_text()


def test_required_resources_exist() -> None:
    text = "\n".join(p.read_text() for p in TF.rglob("*.tf"))
    for needle in (
        'resource "aws_sagemaker_cluster"',
        "node_recovery = var.node_recovery",
        "on_start_deep_healthchecks",
        "training_plan_arn",
        'resource "aws_fsx_data_repository_association"',
        'resource "aws_ebs_encryption_by_default"',
        'resource "aws_eks_pod_identity_association"',
        'resource "aws_eks_access_entry"',
        'authentication_mode                         = "API"',
        '"sagemaker.api"',
        '"ecr.dkr"',
        "enable_flow_log",
    ):
        assert needle in text, needle


BAD_HCL = {
    "s3": """
resource "aws_s3_bucket" "b" {
  bucket = "b"
}
resource "aws_s3_bucket_server_side_encryption_configuration" "b" {
  bucket = aws_s3_bucket.b.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}
resource "aws_s3_bucket_versioning" "b" {
  bucket = aws_s3_bucket.b.id
  versioning_configuration {
    status = "Suspended"
  }
}
resource "aws_s3_bucket_public_access_block" "b" {
  bucket                  = aws_s3_bucket.b.id
  block_public_acls       = true
  block_public_policy     = false
  ignore_public_acls      = true
  restrict_public_buckets = true
}
""",
    "sg": """
resource "aws_vpc_security_group_ingress_rule" "ssh" {
  security_group_id = "sg-1"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
}
resource "aws_security_group" "inline" {
  ingress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}
""",
    "iam": """
data "aws_iam_policy_document" "admin" {
  statement {
    actions   = ["*"]
    resources = ["*"]
  }
  statement {
    actions   = ["s3:GetObject"]
    resources = ["*"]
  }
}
""",
    "ecr": """
resource "aws_ecr_repository" "r" {
  name                 = "r"
  image_tag_mutability = "MUTABLE"
}
variable "undocumented" {}
module "vpc" {
  source  = "terraform-aws-modules/vpc/aws"
  version = "~> 6.0"
}
resource "aws_cloudwatch_log_group" "g" {
  name = "g"
}
""",
}


@pytest.fixture
def bad_tree(tmp_path: Path) -> Path:
    for name, text in BAD_HCL.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "main.tf").write_text(text)
    return tmp_path


def test_hcl_checks_catch_each_violation(bad_tree: Path) -> None:
    found = {(f["rule"], f["address"]) for f in hcl_findings(bad_tree)}
    expected = {
        ("s3-encryption", "aws_s3_bucket.b"),
        ("s3-versioning", "aws_s3_bucket.b"),
        ("s3-private", "aws_s3_bucket.b"),
        ("s3-tls-only", "aws_s3_bucket.b"),
        ("sg-open-ingress", "aws_vpc_security_group_ingress_rule.ssh"),
        ("sg-open-ingress", "aws_security_group.inline"),
        ("iam-star", "data.aws_iam_policy_document.admin"),
        ("ecr", "aws_ecr_repository.r"),
        ("variables", "var.undocumented"),
        ("module-version", "module.vpc"),
        ("logs", "aws_cloudwatch_log_group.g"),
    }
    assert expected <= found, expected - found


def test_hcl_checks_catch_a_regression_in_our_storage_module(tmp_path: Path) -> None:
    copy = tmp_path / "storage"
    shutil.copytree(TF / "modules" / "storage", copy)
    main = copy / "main.tf"
    main.write_text(main.read_text().replace('values   = ["false"]', 'values   = ["true"]'))
    rules = {f["rule"] for f in hcl_findings(copy)}
    assert rules == {"s3-tls-only"}


# ------------------------------------------------------------------ structure read with python-hcl2 (as JSON)


def test_airflow_role_is_mapped_into_kubernetes_to_the_group_our_rolebinding_binds() -> None:
    """Airflow reaches EKS with an IAM token of its role (KubeRayHook's eks_cluster_name path): the role needs
    an access entry, mapped to the Kubernetes group that the chart's RoleBinding binds to our Role."""
    import yaml

    iam, env = TF / "modules" / "iam", TF / "envs" / "prod"
    iam_docs, env_docs = hcl(iam), hcl(env)
    entries = {
        address: body
        for address, body in blocks(iam_docs, "resource").items()
        if address.startswith("aws_eks_access_entry.") and "aws_iam_role.airflow.arn" in body["principal_arn"]
    }
    assert list(entries) == ["aws_eks_access_entry.airflow"], entries
    entry = entries["aws_eks_access_entry.airflow"]
    assert entry["cluster_name"] == "${var.eks_cluster_name}" and entry["type"] == "STANDARD"
    assert entry["kubernetes_groups"] == ["${var.airflow_kubernetes_group}"]
    # no AWS access policy: what Airflow may do in Kubernetes is exactly the namespaced Role (RBAC)
    associations = [b for a, b in blocks(iam_docs, "resource").items() if "access_policy_association" in a]
    assert not [b for b in associations if "airflow" in str(b.get("principal_arn"))]

    group = blocks(iam_docs, "variable")["airflow_kubernetes_group"]["default"]
    assert group and not group.startswith("system:")  # EKS refuses system: groups in access entries
    assert blocks(env_docs, "variable")["airflow_kubernetes_group"]["default"] == group
    assert blocks(env_docs, "module")["iam"]["airflow_kubernetes_group"] == "${var.airflow_kubernetes_group}"

    shipped = [d for d in yaml.safe_load_all((INFRA / "k8s" / "continuous-learning.yaml").read_text()) if d]
    role = next(d for d in shipped if d["kind"] == "Role")
    binding = next(d for d in shipped if d["kind"] == "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}  # fmt: skip
    assert {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": group} in binding["subjects"]
