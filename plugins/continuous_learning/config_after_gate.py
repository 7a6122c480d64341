"""The settings sections of the stages after the gate: the serving hand-off, live-feedback monitoring and
experiment tracking (``config.py`` composes them into :class:`~continuous_learning.config.Settings`), and
the frozen, strict base every section shares."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SettingsSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MonitoringSettings(SettingsSection):
    """The production model's live feedback (thumbs, corrections), read from curated data by the gate.

    A sustained drop after a promotion raises an alert offering a rollback: on each of the last
    ``sustained_days`` days the production version served at least ``min_interactions`` interactions with
    at least ``min_thumbs`` thumbs, and its thumbs-up rate was more than ``max_thumbs_up_drop`` below the
    previous version's (pooled over the ``lookback_days`` before the day checked)."""

    enabled: bool = Field(True, description="compute live feedback at the gate and alert on a drop")
    lookback_days: int = Field(14, ge=2, le=90, description="days of curated data read (baseline included)")
    sustained_days: int = Field(3, ge=1, le=30, description="consecutive days the drop must last")
    min_interactions: int = Field(100, ge=1, description="a day counts only with this many interactions")
    min_thumbs: int = Field(30, ge=1, description="... and this many thumbs (up or down)")
    max_thumbs_up_drop: float = Field(
        0.05, gt=0.0, lt=1.0, description="thumbs-up rate below the previous version's by more than this"
    )


class SageMakerServingSettings(SettingsSection):
    """A SageMaker real-time endpoint (``serving.target = sagemaker``), updated blue/green with a canary.

    The model package mirrored at promotion gets an InferenceSpecification with ``image`` and the model's
    S3 folder, so it is deployable. Each deployment creates a Model and an EndpointConfig named for the
    version and registry revision, then creates or updates ``endpoint_name`` with a DeploymentConfig: a
    canary of ``canary_percent`` of capacity for ``canary_wait_s``, then the rest; any of ``alarms`` in
    ALARM during the shift rolls the endpoint back (SageMaker's deployment guardrails), and again
    during ``bake_s`` after it (checked by the operator itself).
    """

    endpoint_name: str = Field("continuous-learning-agent", pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
    image: str | None = Field(
        None, description="inference container image (e.g. an SGLang or LMI image in ECR)"
    )
    execution_role_arn: str | None = Field(None, pattern=r"^arn:aws[a-z-]*:iam::")
    instance_type: str = "ml.g6e.2xlarge"
    instance_count: int = Field(1, ge=1, le=100)
    variant_name: str = "AllTraffic"
    environment: dict[str, str] = Field(default_factory=dict, description="the container's environment")
    canary_percent: int = Field(10, ge=1, le=99, description="capacity share of the canary step")
    canary_wait_s: int = Field(600, ge=0, le=3600, description="bake time of the canary before the rest")
    termination_wait_s: int = Field(
        300, ge=0, le=3600, description="old fleet kept this long after the shift"
    )
    alarms: list[str] = Field(
        default_factory=list, description="CloudWatch alarms that roll back a deployment"
    )
    bake_s: int = Field(0, ge=0, description="after the shift, alarms are watched this long before success")
    wait_timeout_s: int = Field(7200, gt=0)
    poll_interval_s: float = Field(30.0, gt=0)


class SGLangServingSettings(SettingsSection):
    """An SGLang Deployment on the EKS cluster (``serving.target = sglang``), rolled to new weights.

    Rolling update (``maxUnavailable 0``): new pods must pass SGLang's readiness probe before old ones go;
    a rollout that does not become ready within ``progress_deadline_s`` is rolled back to the previous
    pod template. A LoRA version whose base model already serves is loaded into the running pods through
    SGLang's ``/load_lora_adapter`` (no restart) when ``lora_hot_load`` is on and the adapter is on a path
    the pods mount.
    """

    namespace: str = Field("serving", min_length=1)
    deployment_name: str = Field("agent-sglang", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    image: str = "lmsysorg/sglang:v0.5.12-cu129"
    downloader_image: str = Field("public.ecr.aws/aws-cli/aws-cli:2.22.0", description="copies s3:// weights")
    service_account: str | None = "sglang-serving"
    replicas: int = Field(1, ge=1, le=64)
    gpus: int = Field(1, ge=0, le=16)
    tensor_parallel: int = Field(1, ge=1, le=16)
    port: int = Field(30000, ge=1, le=65535)
    shared_claim: str | None = Field(None, description="PersistentVolumeClaim with the models (e.g. FSx)")
    shared_mount_path: str = "/fsx"
    extra_args: list[str] = Field(default_factory=list)
    lora_hot_load: bool = True
    max_lora_rank: int = Field(64, ge=1)
    progress_deadline_s: int = Field(1800, ge=10)
    wait_timeout_s: int = Field(3600, gt=0)
    poll_interval_s: float = Field(15.0, gt=0)


class ServingSettings(SettingsSection):
    """Where ``deploy_production`` hands the production model (``none``: nobody is told)."""

    target: Literal["none", "sagemaker", "sglang"] = "none"
    aws_conn_id: str = "aws_default"
    region_name: str | None = None
    kubernetes_conn_id: str | None = Field(
        None, description="explicit Kubernetes connection (in-cluster too)"
    )
    eks_cluster_name: str | None = Field(None, description="else the EKS cluster reached through aws_conn_id")
    deferrable: bool = True
    sagemaker: SageMakerServingSettings = SageMakerServingSettings()
    sglang: SGLangServingSettings = SGLangServingSettings()


class TrackingSettings(SettingsSection):
    """The experiment tracker (MLflow): each training run's params, per-step metrics, gate and report.

    Off (``enabled = false``): nothing is sent anywhere and no MLflow call is made."""

    enabled: bool = Field(False, description="send runs to the MLflow server at tracking_uri")
    tracking_uri: str | None = Field(
        None,
        pattern=r"^(https?://|arn:aws[a-z-]*:sagemaker:)",
        description="the MLflow server (http://mlflow:5000), or a SageMaker managed MLflow ARN",
    )
    experiment: str = Field("continuous-learning", min_length=1, max_length=200)
    request_timeout_s: int = Field(30, ge=1, le=600, description="each HTTP call to the server")

    @model_validator(mode="after")
    def _uri_when_enabled(self) -> TrackingSettings:
        if self.enabled and not self.tracking_uri:
            raise ValueError("tracking.enabled needs tracking.tracking_uri (e.g. http://127.0.0.1:5000)")
        return self
