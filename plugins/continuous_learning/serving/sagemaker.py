"""A SageMaker real-time endpoint for the production model: requests rendered from settings, and the
next step decided from ``DescribeEndpoint`` and the alarms' states. No clients here.

One deployment per (version, registry revision): the Model and the EndpointConfig are named for both,
so a retry finds what an earlier try created (idempotent), and a rollback to an older version makes new
ones (a new revision) instead of reusing a config that may have been changed by hand.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from continuous_learning.config_after_gate import SageMakerServingSettings
from continuous_learning.contracts import ProductionModelEvent
from continuous_learning.serving.handoff import MODEL_VERSION_ENV

#: Endpoint states that move by themselves: wait.
TRANSITIONAL = ("Creating", "Updating", "SystemUpdating", "RollingBack", "UpdateRollbackFailed_", "Deleting")

Step = Literal["create", "update", "wait", "done", "rolled_back", "failed"]


def resource_name(endpoint: str, event: ProductionModelEvent) -> str:
    """``<endpoint>-<version>-r<revision>``, at most 63 characters (the SageMaker name limit)."""
    suffix = f"-{event.version}-r{event.revision}"
    return re.sub(r"-+$", "", endpoint[: 63 - len(suffix)]) + suffix


def _model_data(model_uri: str) -> dict[str, Any]:
    if model_uri.endswith(".tar.gz"):
        return {"ModelDataUrl": model_uri}
    # a Hugging Face folder, uncompressed: SageMaker copies the prefix to /opt/ml/model
    return {"ModelDataSource": {"S3DataSource": {"S3Uri": model_uri.rstrip("/") + "/",
                                                 "S3DataType": "S3Prefix", "CompressionType": "None"}}}  # fmt: skip


def container(settings: SageMakerServingSettings, model_uri: str) -> dict[str, Any]:
    """The inference container: the image from settings and the model's S3 data."""
    if not settings.image:
        raise ValueError("serving.sagemaker.image: set the inference container image to deploy to SageMaker")
    if not model_uri.startswith("s3://"):
        raise ValueError(f"a SageMaker endpoint serves models on S3, not {model_uri}")
    return {"Image": settings.image, **_model_data(model_uri), "Environment": dict(settings.environment)}


def inference_specification(settings: SageMakerServingSettings, model_uri: str) -> dict[str, Any]:
    """A model package's InferenceSpecification: what makes the mirrored package deployable."""
    return {
        "Containers": [container(settings, model_uri)],
        "SupportedContentTypes": ["application/json"],
        "SupportedResponseMIMETypes": ["application/json"],
        "SupportedRealtimeInferenceInstanceTypes": [settings.instance_type],
    }


def create_model_request(settings: SageMakerServingSettings, event: ProductionModelEvent) -> dict[str, Any]:
    """CreateModel: from the approved model package when it was mirrored, else from image and data."""
    if not settings.execution_role_arn:
        raise ValueError("serving.sagemaker.execution_role_arn: the role the endpoint's containers run as")
    primary: dict[str, Any] = (
        {"ModelPackageName": event.sagemaker_model_package_arn}
        if event.sagemaker_model_package_arn
        else container(settings, event.model_uri)
    )
    # the version the serving side stamps into the logs it writes (docs/input-contract.md), as on SGLang
    primary["Environment"] = {**primary.get("Environment", {}), MODEL_VERSION_ENV: event.version}
    return {
        "ModelName": resource_name(settings.endpoint_name, event),
        "ExecutionRoleArn": settings.execution_role_arn,
        "PrimaryContainer": primary,
        "Tags": tags(event),
    }


def endpoint_config_request(
    settings: SageMakerServingSettings, event: ProductionModelEvent
) -> dict[str, Any]:
    name = resource_name(settings.endpoint_name, event)
    variant = {"VariantName": settings.variant_name, "ModelName": name, "InstanceType": settings.instance_type,
               "InitialInstanceCount": settings.instance_count, "InitialVariantWeight": 1.0}  # fmt: skip
    return {"EndpointConfigName": name, "ProductionVariants": [variant], "Tags": tags(event)}


def deployment_config(settings: SageMakerServingSettings) -> dict[str, Any]:
    """Blue/green with a canary, rolled back by SageMaker when an alarm fires (deployment guardrails)."""
    routing = {"Type": "CANARY", "WaitIntervalInSeconds": settings.canary_wait_s,
               "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": settings.canary_percent}}  # fmt: skip
    config: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": settings.termination_wait_s,
        }
    }
    if settings.alarms:
        config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in settings.alarms]}
    return config


def tags(event: ProductionModelEvent) -> list[dict[str, str]]:
    return [{"Key": "continuous-learning:version", "Value": event.version},
            {"Key": "continuous-learning:revision", "Value": str(event.revision)}]  # fmt: skip


def next_step(endpoint: Mapping[str, Any] | None, target_config: str, updated: bool = False) -> Step:
    """What to do given ``DescribeEndpoint`` (None: no endpoint yet).

    ``updated``: this deployment has already asked for the update, so an endpoint back InService on
    another config means SageMaker rolled it back (an alarm during the traffic shift, or failed health
    checks), not that the update is still to be asked for.
    """
    if endpoint is None:
        return "create"
    status = str(endpoint.get("EndpointStatus"))
    if status == "Failed":
        return "failed"
    if status in TRANSITIONAL or status.startswith("UpdateRollback"):
        return "wait"
    if endpoint.get("EndpointConfigName") == target_config:
        return "done"
    return "rolled_back" if updated else "update"


def firing(alarms: Sequence[Mapping[str, Any]], names: Sequence[str]) -> list[str]:
    """The alarms among ``names`` in state ALARM (``DescribeAlarms``' ``MetricAlarms``/``CompositeAlarms``)."""
    wanted = set(names)
    return sorted(
        a["AlarmName"] for a in alarms if a.get("AlarmName") in wanted and a.get("StateValue") == "ALARM"
    )
