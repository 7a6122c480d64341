"""Promotion cannot half-happen: each call of ``promote`` (SageMaker Model Registry on moto, the registry
on file:// storage) fails once, the retry completes, and registry alias, SageMaker package and the Asset
event's extra agree; a last try that fails after the move undoes it. The rollback DAG (real Airflow)
emits the event with the model in its extra."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from continuous_learning import storage
from continuous_learning.contracts import ProductionModelEvent
from continuous_learning.registry import ModelRegistry
from continuous_learning.sagemaker_registry import find_version

from tests.conftest import REPO
from tests.serving.faults import ActionFaultProxy

pytestmark = pytest.mark.integration
SAGEMAKER_CALLS = ["DescribeModelPackageGroup", "ListModelPackages", "CreateModelPackage", "DescribeModelPackage",
                   "UpdateModelPackage"]  # fmt: skip
STORAGE_FAULTS = ["production-before-write", "production-response-lost", "previous-before-write"]


class _TI:
    def __init__(self, try_number: int) -> None:
        self.try_number, self.xcoms = try_number, {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def _context(try_number: int) -> dict[str, Any]:
    from continuous_learning.airflow.assets import PRODUCTION_MODEL

    return {"params": {}, "ti": _TI(try_number), "dag": SimpleNamespace(dag_id="continuous_training"),
            "run_id": "scheduled__2026-12-01", "outlet_events": {PRODUCTION_MODEL: SimpleNamespace(extra={})}}  # fmt: skip


@pytest.fixture
def setup(aws_serving: str, storage_root: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    group = f"agents-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("CL_REGISTRY__SAGEMAKER_MODEL_PACKAGE_GROUP", group)
    monkeypatch.setenv(
        "CL_SERVING__SAGEMAKER__IMAGE", "123456789012.dkr.ecr.us-east-1.amazonaws.com/sglang:1"
    )
    registry = ModelRegistry(storage.join(storage_root, "registry"))
    registry.register("s3://models/agent/v0/", "bootstrap", None, None)
    registry.register("s3://models/agent/v1/", "continuous_training__scheduled__2026-12-01", "v0", "d1",
                      metrics={"reward": 0.7})  # fmt: skip
    registry.promote("v0", "bootstrap", None, expected_revision=0)
    client = boto3.client("sagemaker", endpoint_url=aws_serving, region_name="us-east-1")
    return {"group": group, "registry": registry, "client": client}


def _operator(retries: int = 1) -> Any:
    from continuous_learning.airflow.promotion import PromoteModelOperator

    return PromoteModelOperator(
        task_id="promote", retries=retries, decision={"promote": True, "reasons": ["better"]},
        candidate={"version": "v1"}, base={"version": "v0", "production_revision": 1},
    )  # fmt: skip


def _storage_fault(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    original = storage.LocalStore.put_if_absent
    target = (
        "aliases/production/rev-000002" if kind.startswith("production") else "aliases/previous/rev-000001"
    )
    left = [1]

    def put_if_absent(self: Any, uri: str, data: bytes) -> bool:
        if target in uri and left[0]:
            left[0] -= 1
            if kind.endswith("response-lost"):
                original(self, uri, data)  # written, but the caller never hears so
            raise storage.StorageError(f"injected: {kind}")
        return original(self, uri, data)

    monkeypatch.setattr(storage.LocalStore, "put_if_absent", put_if_absent)


def _assert_consistent(setup: dict[str, Any], context: dict[str, Any]) -> None:
    from continuous_learning.airflow.assets import PRODUCTION_MODEL

    registry, client, group = setup["registry"], setup["client"], setup["group"]
    production, previous = registry.alias("production"), registry.alias("previous")
    assert (production.version, production.revision, previous.version) == ("v1", 2, "v0")
    packages = client.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
    described = [client.describe_model_package(ModelPackageName=p["ModelPackageArn"]) for p in packages]
    assert [d["CustomerMetadataProperties"]["version"] for d in described] == [
        "v1"
    ]  # exactly one, no duplicate
    package = find_version(client, group, "v1")
    assert package is not None and package["ModelApprovalStatus"] == "Approved"
    container = package["InferenceSpecification"]["Containers"][0]  # deployable
    assert container["ModelDataSource"]["S3DataSource"]["S3Uri"] == "s3://models/agent/v1/"
    event = ProductionModelEvent.from_extra(context["outlet_events"][PRODUCTION_MODEL].extra)
    assert (event.version, event.revision, event.model_uri) == ("v1", 2, "s3://models/agent/v1/")
    assert event.sagemaker_model_package_arn == package["ModelPackageArn"]


@pytest.mark.parametrize("fault", SAGEMAKER_CALLS + STORAGE_FAULTS)
def test_each_call_failing_once_is_retried_to_a_consistent_end(
    setup: dict[str, Any], aws_serving: str, fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ActionFaultProxy(aws_serving, {fault: 1} if fault in SAGEMAKER_CALLS else {}) as proxy:
        conn = {"conn_type": "aws", "login": "testing", "password": "testing",
                "extra": {"region_name": "us-east-1", "endpoint_url": proxy.url,
                          "config_kwargs": {"retries": {"total_max_attempts": 1}}}}  # fmt: skip
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
        if fault in STORAGE_FAULTS:
            _storage_fault(monkeypatch, fault)
        first = _context(1)
        with pytest.raises(Exception, match=r"injected|InternalFailure"):
            _operator().execute(first)
        assert "production_model" not in first["ti"].xcoms  # no event from a failed try
        second = _context(2)
        _operator().execute(second)
        if fault in SAGEMAKER_CALLS:
            assert proxy.served == [fault]
    _assert_consistent(setup, second)


def test_a_last_try_failing_after_the_move_undoes_it(
    setup: dict[str, Any], aws_serving: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ActionFaultProxy(aws_serving, {"UpdateModelPackage": 2}) as proxy:
        conn = {"conn_type": "aws", "login": "testing", "password": "testing",
                "extra": {"region_name": "us-east-1", "endpoint_url": proxy.url,
                          "config_kwargs": {"retries": {"total_max_attempts": 1}}}}  # fmt: skip
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
        for try_number in (1, 2):  # retries=1: the second try is the last
            context = _context(try_number)
            with pytest.raises(Exception, match="InternalFailure"):
                _operator(retries=1).execute(context)
            assert "production_model" not in context["ti"].xcoms
    registry = setup["registry"]
    production = registry.alias("production")
    assert production.version == "v0" and production.reason.startswith("undo: move to v1")
    package = find_version(setup["client"], setup["group"], "v1")
    assert package is not None and package["ModelApprovalStatus"] == "Rejected"


def test_rollback_dag_emits_the_model_in_the_asset_event(
    airflow_db: str, setup: dict[str, Any], aws_serving: str
) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from continuous_learning.sagemaker_registry import ensure_version

    registry = setup["registry"]
    registry.promote("v1", "gate", "run-1", expected_revision=1)
    ensure_version(setup["client"], setup["group"], "v1", "s3://models/agent/v1/", {}, approved=True)
    run = (
        DagBag(dag_folder=str(REPO / "dags"))
        .get_dag("model_rollback")
        .test(run_conf={"target_version": "previous", "reason": "shop agent regression"})
    )
    assert str(run.state) == "success"
    with create_session() as session:
        events = (
            session.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == "continuous_learning.production_model",
                    AssetEvent.source_run_id == run.run_id).all()
        )  # fmt: skip
        extras = [dict(e.extra) for e in events]
    assert len(extras) == 1
    event = ProductionModelEvent.from_extra(extras[0])
    production = registry.alias("production")
    assert (event.version, event.revision, event.previous_version) == ("v0", production.revision, "v1")
    package = find_version(setup["client"], setup["group"], "v0")
    assert package is not None and package["ModelApprovalStatus"] == "Approved"
    assert event.sagemaker_model_package_arn == package["ModelPackageArn"]
    assert find_version(setup["client"], setup["group"], "v1")["ModelApprovalStatus"] == "Rejected"  # type: ignore[index]
