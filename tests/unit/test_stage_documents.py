"""What passes between the stages: the cluster reference, the run labels of mapped tasks, the report URL,
and promote's policy (plain data in, plain data out)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from continuous_learning.compute import kuberay
from continuous_learning.contracts import (
    ContractError,
    KubeRayClusterRef,
    LocalRayClusterRef,
    partition_uri,
    read_cluster_ref,
    result_uri,
)
from continuous_learning.promotion_policy import FORCE_PROMOTE_CONFIRMATION, verdict

KUBERAY_DOC: dict[str, Any] = {
    "backend": "kuberay",
    "name": "continuous-training-0123456789ab",
    "namespace": "continuous-learning",
    "hook": {"kubernetes_conn_id": None, "eks_cluster_name": "arn:aws:eks:us-east-1:1:cluster/cl",
             "aws_conn_id": "aws_default", "region_name": "us-east-1", "retries": 5},
    "capacity": {"cluster_name": "cl", "instance_group": "gpu-workers", "required": 2, "current": 0, "target": 0,
                 "action": "scale", "scale_to": 2, "original_count": 0, "training_plan_arn": None,
                 "autoscaling_managed": False, "eks_cluster_arn": "arn:aws:eks:us-east-1:1:cluster/cl",
                 "instance_type": "ml.p5en.48xlarge", "gpu_class": "h200"},
    "nnodes": 2,
    "n_gpus_per_node": 8,
    "gpu_class": "h200",
}  # fmt: skip
LOCAL_DOC = {"backend": "local_ray", "dashboard_url": "http://127.0.0.1:8265", "gcs_address": "127.0.0.1:6379",
             "pgid": 4242, "temp_dir": "/tmp/ray", "log_path": "/tmp/ray/head.log"}  # fmt: skip


def test_the_cluster_reference_keeps_the_xcom_document_as_it_was() -> None:
    ref = read_cluster_ref(KUBERAY_DOC)
    assert isinstance(ref, KubeRayClusterRef) and ref.capacity is not None and ref.capacity.action == "scale"
    assert json.dumps(ref.model_dump(mode="json")) == json.dumps(KUBERAY_DOC)  # same keys, same order
    assert ref.trainer_resources() == {"nnodes": 2, "n_gpus_per_node": 8, "gpu_class": "h200"}
    local = read_cluster_ref(LOCAL_DOC)
    assert isinstance(local, LocalRayClusterRef) and json.dumps(local.model_dump(mode="json")) == json.dumps(
        LOCAL_DOC
    )
    with pytest.raises(ContractError, match="not a valid cluster reference"):
        read_cluster_ref({"backend": "yarn", "name": "x"})
    with pytest.raises(ContractError, match="namespace"):
        read_cluster_ref({k: v for k, v in KUBERAY_DOC.items() if k != "namespace"})


def test_storage_layout_is_spelled_once() -> None:
    from datetime import date

    assert result_uri("file:///runs/r1/train") == "file:///runs/r1/train/result.json"
    assert partition_uri("s3://b/data", "reward", date(2026, 11, 3)) == "s3://b/data/reward/dt=2026-11-03"


def test_mapped_task_instances_get_their_own_labels_and_task_key() -> None:
    plain = kuberay.run_labels("d", "r", "reingest_day")
    assert (
        plain
        == kuberay.run_labels("d", "r", "reingest_day", None)
        == kuberay.run_labels("d", "r", "reingest_day", -1)
    )
    assert plain[f"{kuberay.LABEL_PREFIX}/task-key"] == kuberay.identity_key("d", "r", "reingest_day")
    first, second = (kuberay.run_labels("d", "r", "reingest_day", i) for i in (0, 1))
    assert (
        first[f"{kuberay.LABEL_PREFIX}/map-index"] == "0"
        and second[f"{kuberay.LABEL_PREFIX}/map-index"] == "1"
    )
    keys = {labels[f"{kuberay.LABEL_PREFIX}/task-key"] for labels in (plain, first, second)}
    assert len(keys) == 3, "mapped instances would find each other's jobs"
    assert (
        first[f"{kuberay.LABEL_PREFIX}/run-key"] == plain[f"{kuberay.LABEL_PREFIX}/run-key"]
    )  # teardown finds all


def test_the_report_url_is_computed_once() -> None:
    from continuous_learning.airflow.links import report_url

    assert report_url({"report": {"html": "s3://bucket/runs/r1/report.html"}}) == (
        "https://bucket.s3.amazonaws.com/runs/r1/report.html"
    )
    assert report_url({"report": {"html": "file:///tmp/r1/report.html"}}) == "file:///tmp/r1/report.html"
    assert report_url({"report": {}}) is None and report_url(None) is None


REJECT = {"promote": False, "reasons": ["CI includes 0"]}
PROMOTE = {"promote": True, "reasons": ["clears the margin"]}
CANDIDATE = {"version": "v3"}
APPROVED = {
    "required": True,
    "approved": True,
    "candidate": "v3",
    "responded_by": {"id": "ana", "name": "ana"},
}


@pytest.mark.parametrize(
    ("decision", "params", "require", "approval", "action", "text"),
    [
        (PROMOTE, {"dry_run": True}, False, None, "skip", "DRY RUN"),
        (None, {}, False, None, "skip", "no gate decision"),
        (PROMOTE, {"skip_promotion": True}, False, None, "skip", "skip_promotion Param (gate said: clears"),
        (REJECT, {}, False, None, "skip", "gate rejected v3; production unchanged: CI includes 0"),
        (REJECT, {"force_promote": True, "force_promote_confirmation": "yes"}, False, None, "fail", "PROMOTE ANYWAY"),
        (PROMOTE, {}, False, None, "promote", "gate: clears the margin"),
        (PROMOTE, {}, True, None, "fail", "recorded no approval for v3"),
        (PROMOTE, {}, True, APPROVED, "promote", "gate: clears the margin | approved by ana"),
    ],
)  # fmt: skip
def test_promote_verdict(
    decision: Any, params: dict[str, Any], require: bool, approval: Any, action: str, text: str
) -> None:
    answer = verdict(decision, CANDIDATE, params, require_approval=require, approval=approval)
    assert answer.action == action and text in answer.message
    assert answer.gate_rejected == (decision is REJECT and action == "skip")


def test_a_confirmed_forced_promotion_says_so_before_it_promotes() -> None:
    params = {"force_promote": True, "force_promote_confirmation": FORCE_PROMOTE_CONFIRMATION,
              "force_promote_reason": "held-out set was stale"}  # fmt: skip
    answer = verdict(REJECT, CANDIDATE, params, require_approval=False)
    assert answer.action == "promote" and not answer.gate_rejected
    assert answer.message.startswith("FORCED despite gate rejection: held-out set was stale (gate said: CI")
    assert answer.notes == (f"v3 force-promoted: {answer.message}",)
    # the forced note is kept even when the approval then refuses
    refused = verdict(REJECT, CANDIDATE, params, require_approval=True)
    assert refused.action == "fail" and refused.notes
