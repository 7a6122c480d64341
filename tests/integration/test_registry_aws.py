"""Registry on real AWS APIs on loopback (moto server): S3 conditional writes decide concurrent
promotions, and promotions are mirrored to the SageMaker Model Registry."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from continuous_learning import storage
from continuous_learning.registry import ModelRegistry
from continuous_learning.sagemaker_registry import find_version, register_version, set_approval

from tests.servers import moto_server
from tests.unit.helpers import race_for_production

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def aws(moto: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "CL_S3_ENDPOINT_URL": moto}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    storage.set_s3_client_factory(None)
    return moto


def test_concurrent_promotions_on_s3_exactly_one_wins(aws: str) -> None:
    boto3.client("s3", endpoint_url=aws).create_bucket(Bucket="registry-cas")
    registry = ModelRegistry("s3://registry-cas/models")
    for i in range(3):
        registry.register(f"s3://registry-cas/m/{i}", f"run-{i}", None, None)
    registry.promote("v0", "bootstrap", None, expected_revision=0)

    outcomes = race_for_production("s3://registry-cas/models")
    assert sorted(o[:4] for o in outcomes) == ["lost", "won"], outcomes
    loser = next(o for o in outcomes if o.startswith("lost"))
    assert "moved by another run" in loser or "moved concurrently" in loser
    assert registry.alias("production").revision == 2


def test_promotions_are_mirrored_to_sagemaker_model_registry(aws: str) -> None:
    client = boto3.client("sagemaker", endpoint_url=aws)
    arn = register_version(client, "agents", "v1", "s3://b/m/1", {"metric.reward": 0.61, "run_id": "r1"})
    register_version(client, "agents", "v2", "s3://b/m/2", {"metric.reward": 0.66, "run_id": "r2"})
    package = find_version(client, "agents", "v1")
    assert package is not None and package["ModelPackageArn"] == arn
    assert package["ModelApprovalStatus"] == "Approved"
    assert package["CustomerMetadataProperties"]["metric.reward"] == "0.61"
    set_approval(client, "agents", "v2", False, "rolled back: shop regression")
    rejected = find_version(client, "agents", "v2")
    assert rejected is not None and rejected["ModelApprovalStatus"] == "Rejected"
    assert rejected["CustomerMetadataProperties"]["version"] == "v2"  # metadata kept through the update
