"""deploy_production to a SageMaker endpoint, in real Airflow (dag.test, triggers inline) against moto
(SageMaker, CloudWatch) on loopback: first deployment, blue/green update, a retry that changes nothing,
and a canary whose alarm is in ALARM rolled back by itself."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from continuous_learning import storage
from continuous_learning.registry import ModelRegistry

from tests.conftest import REPO
from tests.serving.conftest import update_requests

pytestmark = pytest.mark.integration
ENDPOINT = "agent-endpoint"
ALARM = "agent-endpoint-5xx"


@pytest.fixture
def sagemaker_target(aws_serving: str, storage_root: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for key, value in {
        "CL_SERVING__TARGET": "sagemaker", "CL_SERVING__DEFERRABLE": "true",
        "CL_SERVING__SAGEMAKER__ENDPOINT_NAME": ENDPOINT,
        "CL_SERVING__SAGEMAKER__IMAGE": "123456789012.dkr.ecr.us-east-1.amazonaws.com/sglang:0.5.12",
        "CL_SERVING__SAGEMAKER__EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/endpoint",
        "CL_SERVING__SAGEMAKER__ALARMS": json.dumps([ALARM]), "CL_SERVING__SAGEMAKER__POLL_INTERVAL_S": "0.2",
        "CL_SERVING__SAGEMAKER__BAKE_S": "1", "CL_SERVING__SAGEMAKER__INSTANCE_TYPE": "ml.g4dn.xlarge",
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    cloudwatch = boto3.client("cloudwatch", endpoint_url=aws_serving, region_name="us-east-1")
    cloudwatch.put_metric_alarm(
        AlarmName=ALARM, Namespace="AWS/SageMaker", MetricName="Invocation5XXErrors", Statistic="Sum",
        Period=60, EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanOrEqualToThreshold",
        Dimensions=[{"Name": "EndpointName", "Value": ENDPOINT}],
    )  # fmt: skip
    cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue="OK", StateReason="healthy")
    registry = ModelRegistry(storage.join(storage_root, "registry"))
    for i in range(3):
        registry.register(f"s3://models/agent/v{i}/", f"run-{i}", None, None)
    registry.promote("v0", "bootstrap", None, expected_revision=0)
    return {"registry": registry, "cloudwatch": cloudwatch,
            "sagemaker": boto3.client("sagemaker", endpoint_url=aws_serving, region_name="us-east-1")}  # fmt: skip


def _states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_promoted_model_reaches_the_endpoint_and_a_failing_canary_rolls_back(
    airflow_db: str, sagemaker_target: dict[str, Any], aws_serving: str
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    registry, sm, cloudwatch = (
        sagemaker_target["registry"],
        sagemaker_target["sagemaker"],
        sagemaker_target["cloudwatch"],
    )
    dag = DagBag(dag_folder=str(REPO / "dags")).get_dag("deploy_production")

    first = dag.test()  # a manual run: the current production, v0; no endpoint yet -> created
    assert _states(first) == {
        "resolve_model": "success",
        "deploy_sagemaker": "success",
        "deploy_sglang": "skipped",
    }
    endpoint = sm.describe_endpoint(EndpointName=ENDPOINT)
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == ("InService", f"{ENDPOINT}-v0-r1")
    model = sm.describe_model(ModelName=f"{ENDPOINT}-v0-r1")
    assert model["PrimaryContainer"]["ModelDataSource"]["S3DataSource"]["S3Uri"] == "s3://models/agent/v0/"

    registry.promote("v1", "gate: better", "run-1", expected_revision=1)
    second = dag.test()
    assert _states(second)["deploy_sagemaker"] == "success"
    endpoint = sm.describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointConfigName"] == f"{ENDPOINT}-v1-r2"
    updates = [r for r in update_requests(aws_serving) if r["EndpointName"] == ENDPOINT]
    assert [u["EndpointConfigName"] for u in updates][-1:] == [f"{ENDPOINT}-v1-r2"]
    policy = updates[-1]["DeploymentConfig"]  # the guardrails we ask for (moto does not execute them)
    assert policy["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "CANARY"
    assert policy["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["CanarySize"] == {
        "Type": "CAPACITY_PERCENT", "Value": 10}  # fmt: skip
    assert policy["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": ALARM}]}

    again = dag.test()  # a retry of a deployment already done: no new update
    assert _states(again)["deploy_sagemaker"] == "success"
    assert len([r for r in update_requests(aws_serving) if r["EndpointName"] == ENDPOINT]) == len(updates)

    registry.promote("v2", "gate: better still", "run-2", expected_revision=2)
    cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="5xx after the shift")
    failing = dag.test()
    assert _states(failing)["deploy_sagemaker"] == "failed"
    endpoint = sm.describe_endpoint(EndpointName=ENDPOINT)
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == ("InService", f"{ENDPOINT}-v1-r2")
    shifts = [r["EndpointConfigName"] for r in update_requests(aws_serving) if r["EndpointName"] == ENDPOINT]
    assert shifts[-2:] == [f"{ENDPOINT}-v2-r3", f"{ENDPOINT}-v1-r2"]  # shifted, then rolled back
