"""checkov over infra/ (Terraform, Kubernetes, Helm): zero failed checks, every skip with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.infra.conftest import CHECKOV, INFRA, require, run


def checkov(directory: Path) -> list[dict]:
    result = run(require(CHECKOV), "-d", directory, "--skip-download", "--compact", "-o", "json")
    assert result.returncode in (0, 1), result.stderr[-2000:]
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


@pytest.fixture(scope="module")
def infra_reports() -> list[dict]:
    return checkov(INFRA)


def test_checkov_scans_terraform_kubernetes_and_helm(infra_reports: list[dict]) -> None:
    frameworks = {r["check_type"] for r in infra_reports}
    assert {"terraform", "kubernetes", "helm"} <= frameworks
    terraform = next(r for r in infra_reports if r["check_type"] == "terraform")
    assert terraform["summary"]["passed"] > 300


def test_checkov_has_no_failed_checks(infra_reports: list[dict]) -> None:
    failed = [
        f"{r['check_type']}: {c['check_id']} {c['resource']} ({c['file_path']})"
        for r in infra_reports
        for c in r["results"]["failed_checks"]
    ]
    assert failed == []


def test_every_skip_carries_a_reason(infra_reports: list[dict]) -> None:
    skipped = [c for r in infra_reports for c in r["results"]["skipped_checks"]]
    assert skipped, "expected the documented inline skips"
    without_reason = [
        c["check_id"]
        for c in skipped
        if len(str(c.get("check_result", {}).get("suppress_comment", "")).strip()) < 15
    ]
    assert without_reason == []


def test_checkov_catches_an_insecure_bucket(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text('resource "aws_s3_bucket" "bad" {\n  bucket = "bad"\n}\n')
    failed = {c["check_id"] for r in checkov(tmp_path) for c in r["results"]["failed_checks"]}
    assert {"CKV_AWS_145", "CKV2_AWS_6"} <= failed
