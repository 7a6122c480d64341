"""Mirror promotions into the SageMaker Model Registry (a model package per promoted version).

The caller passes a boto3 SageMaker client (the Airflow adapter takes it from the Amazon
provider's SageMakerHook), so credentials and endpoints stay with the connection.
"""

from __future__ import annotations

from typing import Any


def _metadata(values: dict[str, Any]) -> dict[str, str]:
    # CustomerMetadataProperties: string values of at most 256 characters.
    return {str(k)[:128]: str(v)[:256] for k, v in values.items()}


def ensure_group(client: Any, group: str, description: str) -> None:
    try:
        client.describe_model_package_group(ModelPackageGroupName=group)
    except client.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("ValidationException", "ResourceNotFound"):
            raise
        client.create_model_package_group(
            ModelPackageGroupName=group, ModelPackageGroupDescription=description
        )


def register_version(
    client: Any, group: str, version: str, model_uri: str, metadata: dict[str, Any], approved: bool = True
) -> str:
    """Create a model package for ``version``; returns its ARN."""
    ensure_group(client, group, "Models promoted by the continuous-learning pipeline")
    properties = _metadata({"version": version, "model_uri": model_uri, **metadata})
    response = client.create_model_package(
        ModelPackageGroupName=group,
        ModelPackageDescription=f"continuous-learning {version}",
        ModelApprovalStatus="Approved" if approved else "PendingManualApproval",
        CustomerMetadataProperties=properties,
    )
    return str(response["ModelPackageArn"])


def find_version(client: Any, group: str, version: str) -> dict[str, Any] | None:
    paginator = client.get_paginator("list_model_packages")
    for page in paginator.paginate(ModelPackageGroupName=group):
        for summary in page.get("ModelPackageSummaryList", []):
            described = client.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
            if described.get("CustomerMetadataProperties", {}).get("version") == version:
                return dict(described)
    return None


def set_approval(client: Any, group: str, version: str, approved: bool, reason: str) -> str | None:
    """Approve or reject the package of ``version``; metadata is passed again (the API drops it otherwise)."""
    package = find_version(client, group, version)
    if package is None:
        return None
    properties = dict(package.get("CustomerMetadataProperties", {}))
    properties["status_reason"] = reason[:256]
    client.update_model_package(
        ModelPackageArn=package["ModelPackageArn"],
        ModelApprovalStatus="Approved" if approved else "Rejected",
        ApprovalDescription=reason[:1000],
        CustomerMetadataProperties=properties,
    )
    return str(package["ModelPackageArn"])


def ensure_version(
    client: Any,
    group: str,
    version: str,
    model_uri: str,
    metadata: dict[str, Any],
    inference_specification: dict[str, Any] | None = None,
    approved: bool = False,
) -> str:
    """The package of ``version``, created when missing (idempotent by version: a retry finds the one an
    earlier try made). Created ``PendingManualApproval`` by default: promotion approves it only once the
    registry alias has moved. ``inference_specification`` makes it deployable (serving.sagemaker)."""
    ensure_group(client, group, "Models promoted by the continuous-learning pipeline")
    found = find_version(client, group, version)
    if found is not None:
        return str(found["ModelPackageArn"])
    properties = _metadata({"version": version, "model_uri": model_uri, **metadata})
    request: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": f"continuous-learning {version}",
        "ModelApprovalStatus": "Approved" if approved else "PendingManualApproval",
        "CustomerMetadataProperties": properties,
    }
    if inference_specification:
        request["InferenceSpecification"] = inference_specification
    return str(client.create_model_package(**request)["ModelPackageArn"])


def approval_status(client: Any, group: str, version: str) -> str | None:
    package = find_version(client, group, version)
    return None if package is None else str(package.get("ModelApprovalStatus"))
