"""Every document that crosses a task or the trainer boundary, typed: the specs a job reads, the results it
writes, and the cluster reference the Ray tasks pass each other; and the storage layout they share (the
result file of a job, the day partitions of the data). Kept in one module on purpose (DESIGN.md): both sides
of every boundary read the same definitions, and a reviewer sees every cross-task shape in one place."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from continuous_learning import storage
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

#: What a trainer job writes in its spec's ``output_uri``: a TrainResult or an EvalResult.
RESULT_FILE = "result.json"

#: The day-partitioned datasets under ``storage.data_uri``.
DataPartition = Literal["curated", "quarantine", "reward"]


def result_uri(output_uri: str) -> str:
    """The result document of a job whose spec has this ``output_uri``."""
    return storage.join(output_uri, RESULT_FILE)


def partition_uri(data_uri: str, kind: DataPartition, day: date) -> str:
    """One day's partition: ``<data_uri>/<kind>/dt=YYYY-MM-DD``."""
    return storage.join(data_uri, kind, f"dt={day.isoformat()}")


class ContractError(ValueError):
    """A spec or result document is missing or does not match its schema."""


#: How a model family writes tool calls: rollouts produce it, the reward parses it (models/tool_calls.py).
ToolCallFormat = Literal["hermes", "llama3_json", "mistral"]
#: ``sft``: supervised fine-tuning on corrections and positively rated answers (a candidate like any other).
Algorithm = Literal["grpo", "ppo", "sft"]


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @classmethod
    def read(cls, uri: str) -> Any:
        try:
            return cls.model_validate_json(storage.read_bytes(uri))
        except ValidationError as exc:
            raise ContractError(f"{uri} is not a valid {cls.__name__}: {exc}") from None
        except storage.StorageError as exc:
            raise ContractError(f"cannot read {cls.__name__} at {uri}: {exc}") from None

    def write(self, uri: str) -> str:
        storage.write_bytes(uri, self.model_dump_json(indent=2).encode() + b"\n")
        return uri


class DatasetRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset_id: str
    train_uri: str
    validation_uri: str
    test_uri: str
    manifest_uri: str

    @classmethod
    def of(cls, document: Mapping[str, Any]) -> DatasetRef:
        """From the dataset task's XCom, which carries more (counts, window end) than the reference."""
        return cls.model_validate({k: document[k] for k in cls.model_fields})


class RewardWeights(BaseModel):
    """How much each part of a response's score counts; see the trainer's reward module."""

    model_config = ConfigDict(extra="forbid")
    format: float = Field(0.2, ge=0)
    tool_name: float = Field(0.4, ge=0)
    arguments: float = Field(0.4, ge=0)
    text: float = Field(1.0, ge=0)
    negative_penalty: float = Field(0.5, ge=0)


class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    learning_rate: float = Field(gt=0)
    max_steps: int = Field(ge=1)
    samples_per_prompt: int = Field(ge=2)
    prompts_per_step: int = Field(ge=1)
    max_completion_tokens: int = Field(ge=1)
    kl_coef: float = Field(0.0, ge=0)
    temperature: float = Field(1.0, gt=0)
    seed: int = 0
    checkpoint_every: int = Field(10, ge=1)
    checkpoint_every_seconds: float | None = Field(
        None, gt=0, description="also checkpoint once this much wall time has passed since the last one"
    )
    max_seconds: float | None = Field(
        None,
        gt=0,
        description="stop training after this much wall time (from the trainer's start) and keep the latest "
        "checkpoint, merged: the result's status is then 'stopped'",
    )


class LoraOptions(BaseModel):
    """LoRA adapters instead of full fine-tuning (peft on CPU, VeRL's LoRA with SGLang on GPU).

    The trained artifact is the merged model (servable as it is) plus the adapter beside it."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    rank: int = Field(16, ge=1, le=1024)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class RewardFunction(BaseModel):
    """Which reward scores responses, in training and evaluation alike.

    ``function`` unset: the project's reward (``continuous_learning_trainer.rewards``). Otherwise the
    user's: an import path ``package.module:function`` (installed, or shipped with the job), or a Python
    file ``file:///.../my_reward.py:function`` / ``s3://bucket/my_reward.py:function``. It is called as
    ``function(response, reference, tools, **kwargs) -> float`` (see docs/models.md).
    """

    model_config = ConfigDict(extra="forbid")
    function: str | None = Field(None, pattern=r"^[^:\s]+(://[^\s]+)?:[A-Za-z_][A-Za-z0-9_]*$")
    kwargs: dict[str, Any] = Field(default_factory=dict)


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nnodes: int = Field(1, ge=1)
    n_gpus_per_node: int = Field(0, ge=0)
    cpu_threads: int = Field(2, ge=1)
    gpu_class: str | None = Field(
        None, description="accelerator of the trainer nodes (e.g. 'h200'); picks the VeRL performance profile"
    )


class VerlOptions(BaseModel):
    """GPU-engine settings for ``engine: verl`` (ignored by the CPU engine); defaults are the ones
    that ran on an H200 with the trainer image (see docs/trainer-image.md)."""

    model_config = ConfigDict(extra="forbid")
    rollout_tensor_parallel_size: int = Field(1, ge=1)
    rollout_gpu_memory_utilization: float = Field(0.5, gt=0, le=0.95)
    max_prompt_length: int = Field(1024, ge=16)
    micro_batch_size_per_gpu: int = Field(4, ge=1, description="samples per micro-batch without a profile")
    profile: Literal["auto", "verl-defaults", "hopper"] = Field(
        "auto",
        description="performance settings: 'auto' = the profile tuned for resources.gpu_class "
        "(h100/h200: 'hopper'), else VeRL's defaults",
    )
    max_tokens_per_gpu: int | None = Field(
        None,
        ge=256,
        description="token budget of one actor micro-batch under a profile (default: the profile's)",
    )
    attn_implementation: Literal["sdpa", "flash_attention_2", "eager"] = "sdpa"
    sglang_attention_backend: str = "triton"
    sglang_sampling_backend: str = "pytorch"
    max_assistant_turns: int = Field(1, ge=1, description="tool agent loop turns when the dataset has tools")
    transfer_queue_storage_units: int | None = Field(None, ge=1, description="default: one per GPU")
    max_checkpoints_to_keep: int = Field(2, ge=1)
    work_dir: str | None = Field(None, description="local or shared (FSx) folder for data and checkpoints")
    loggers: list[str] = ["console", "file"]
    extra_overrides: list[str] = Field(default_factory=list, description="appended Hydra overrides")


class TrackingRef(BaseModel):
    """The MLflow run a training job reports to (``RunSpec.tracking``; None: tracking is off). The trainer
    passes it to the engine's own logger as ``MLFLOW_TRACKING_URI`` / ``MLFLOW_RUN_ID``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tracking_uri: str = Field(min_length=1)
    experiment: str = Field(min_length=1)
    run_id: str = Field(min_length=1, description="the MLflow run's id (not the Airflow run id)")

    def environment(self) -> dict[str, str]:
        """The environment MLflow's clients (VeRL's ``mlflow`` logger, TRL's callback) read."""
        return {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_EXPERIMENT_NAME": self.experiment,
            "MLFLOW_RUN_ID": self.run_id,
        }


class RunSpec(_Document):
    schema_version: Literal[1] = 1
    run_id: str = Field(min_length=1)
    engine: Literal["cpu", "verl"]
    algorithm: Algorithm = "grpo"
    dataset: DatasetRef
    base_model_uri: str
    base_model_version: str
    output_uri: str
    hyperparameters: Hyperparameters
    resources: Resources = Resources()
    reward_weights: RewardWeights = RewardWeights()
    reward: RewardFunction = RewardFunction()
    tool_call_format: ToolCallFormat = "hermes"
    lora: LoraOptions = LoraOptions()
    resume: bool = True
    verl: VerlOptions = VerlOptions()
    tracking: TrackingRef | None = None


class TrainResult(_Document):
    schema_version: Literal[1] = 1
    run_id: str
    #: ``stopped``: ended early (a signal, ``max_seconds``) with ``model_uri`` the latest checkpoint merged
    #: (None when none was written; the checkpoints stay resumable); a candidate like a succeeded one.
    status: Literal["succeeded", "stopped", "failed"]
    model_uri: str | None
    base_model_version: str
    dataset_id: str
    steps: int
    metrics: dict[str, float]
    history: list[dict[str, float]]
    versions: dict[str, str]
    started_at: datetime
    finished_at: datetime
    error: str | None = None
    adapter_uri: str | None = Field(None, description="LoRA runs: the adapter beside the merged model")
    stop_reason: str | None = Field(None, description="stopped runs: why, and at which step")

    @classmethod
    def succeeded(
        cls,
        spec: RunSpec,
        *,
        model_uri: str,
        adapter_uri: str | None = None,
        steps: int,
        metrics: dict[str, float],
        history: list[dict[str, float]],
        versions: dict[str, str],
        started_at: datetime,
        stop_reason: str | None = None,
    ) -> TrainResult:
        """The result both engines write for a run of ``spec`` that ended with a model: finished, or
        stopped early (``stop_reason`` given) with its latest checkpoint merged."""
        return cls(
            run_id=spec.run_id,
            status="stopped" if stop_reason else "succeeded",
            stop_reason=stop_reason,
            model_uri=model_uri,
            adapter_uri=adapter_uri,
            base_model_version=spec.base_model_version,
            dataset_id=spec.dataset.dataset_id,
            steps=steps,
            metrics=metrics,
            history=history,
            versions=versions,
            started_at=started_at,
            finished_at=datetime.now(UTC),
        )


class BootstrapSpec(_Document):
    """Build the day-0 production model: a tokenizer trained on the corpus, then a short SFT warm start."""

    schema_version: Literal[1] = 1
    run_id: str
    dataset: DatasetRef
    output_uri: str
    warm_start_steps: int = Field(ge=0)
    warm_start_share: float = Field(ge=0, le=1)
    seed: int = 0
    cpu_threads: int = Field(2, ge=1)


class EvalSpec(_Document):
    schema_version: Literal[1] = 1
    run_id: str
    prompts_uri: str
    models: dict[str, str] = Field(description="label -> model URI, e.g. candidate and production")
    max_prompts: int = Field(ge=1)
    max_completion_tokens: int = Field(ge=1)
    output_uri: str
    reward_weights: RewardWeights = RewardWeights()
    reward: RewardFunction = RewardFunction()
    tool_call_format: ToolCallFormat = "hermes"
    engine: Literal["cpu", "sglang"] = "cpu"
    cpu_threads: int = Field(2, ge=1)


class EvalResult(_Document):
    schema_version: Literal[1] = 1
    run_id: str
    scores_uri: str = Field(description="parquet: one row per prompt and model")
    prompts: int
    mean_reward: dict[str, float]
    tool_call_validity: dict[str, float]
    mean_response_chars: dict[str, float]


class ImitationOptions(BaseModel):
    """Warm start on the agent's own logged answers (mistakes included), for demos and tests whose
    model did not write the logs: it then plays the agent, and the loop learns from the feedback."""

    model_config = ConfigDict(extra="forbid")
    dataset: DatasetRef
    steps: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    seed: int = 0


class ImportSpec(_Document):
    """Import the user's model as a registry version: validate, fix what is safe to fix, copy to storage."""

    schema_version: Literal[1] = 1
    run_id: str
    source_uri: str = Field(description="file://, s3://, a local folder, builtin:smollm2 or hf://org/name")
    output_uri: str = Field(description="where the imported Hugging Face folder is written")
    chat_template: str | None = Field(None, description="override: a shipped template name or a .jinja URI")
    tool_call_format: Literal["auto", "hermes", "llama3_json", "mistral"] = "auto"
    gguf_file: str | None = None
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    imitation: ImitationOptions | None = None
    cpu_threads: int = Field(2, ge=1)


class ModelLineage(BaseModel):
    """What a registered model is: where it came from and what its files are."""

    model_config = ConfigDict(extra="forbid")
    source_uri: str
    architecture: str
    model_type: str
    parameters: int
    dtype: str
    files: dict[str, str] = Field(description="file name -> sha256")
    chat_template_sha256: str
    chat_template_source: Literal["model", "override", "fallback"]
    tool_call_format: ToolCallFormat
    fixes: list[str] = Field(default_factory=list, description="what the import changed, and why")
    imitation: dict[str, Any] | None = None


class ImportResult(_Document):
    schema_version: Literal[1] = 1
    run_id: str
    model_uri: str
    lineage: ModelLineage


# ------------------------------------------------------------------ the run's Ray cluster, between tasks


class KubeRayHookArgs(BaseModel):
    """How to reach the Kubernetes API: ``KubeRayHook``'s constructor arguments (the triggers build their
    own hook from them in the triggerer)."""

    model_config = ConfigDict(extra="forbid")
    kubernetes_conn_id: str | None = None
    eks_cluster_name: str | None = None
    aws_conn_id: str | None = "aws_default"
    region_name: str | None = None
    retries: int = 5


class CapacityPlanRef(BaseModel):
    """The HyperPod capacity decision the create task made (``compute.hyperpod.CapacityPlan``), which the
    teardown reads to scale back."""

    model_config = ConfigDict(extra="forbid")
    cluster_name: str
    instance_group: str
    required: int
    current: int
    target: int
    action: Literal["none", "scale", "wait"]
    scale_to: int | None
    original_count: int
    training_plan_arn: str | None
    autoscaling_managed: bool
    eks_cluster_arn: str | None
    instance_type: str | None = None
    gpu_class: str | None = None


class LocalRayClusterRef(BaseModel):
    """A local Ray head (``compute.local_ray.LocalRayHead``): its job API and what stops it."""

    model_config = ConfigDict(extra="forbid")
    backend: Literal["local_ray"] = "local_ray"
    dashboard_url: str
    gcs_address: str
    pgid: int
    temp_dir: str
    log_path: str


class KubeRayClusterRef(BaseModel):
    """A KubeRay RayCluster: where it is, how to reach its API, the capacity under it, and the trainer
    resources it gives a job (nodes, GPUs per node, GPU class)."""

    model_config = ConfigDict(extra="forbid")
    backend: Literal["kuberay"] = "kuberay"
    name: str
    namespace: str
    hook: KubeRayHookArgs
    capacity: CapacityPlanRef | None = None
    nnodes: int
    n_gpus_per_node: int
    gpu_class: str | None = None

    def trainer_resources(self) -> dict[str, Any]:
        """The fields of a spec's ``resources`` this cluster decides (not the trainer settings)."""
        return {"nnodes": self.nnodes, "n_gpus_per_node": self.n_gpus_per_node, "gpu_class": self.gpu_class}


#: The create task's XCom, read by every job task and the teardown; ``backend`` tells which.
ClusterRef = Annotated[LocalRayClusterRef | KubeRayClusterRef, Field(discriminator="backend")]
_CLUSTER_REF: TypeAdapter[LocalRayClusterRef | KubeRayClusterRef] = TypeAdapter(ClusterRef)


def read_cluster_ref(
    document: Mapping[str, Any] | LocalRayClusterRef | KubeRayClusterRef,
) -> LocalRayClusterRef | KubeRayClusterRef:
    """The cluster reference from its XCom document; a clear error when it is not one."""
    if isinstance(document, LocalRayClusterRef | KubeRayClusterRef):
        return document
    try:
        return _CLUSTER_REF.validate_python(dict(document))
    except (ValidationError, TypeError, ValueError) as exc:
        raise ContractError(f"not a valid cluster reference ({document!r}): {exc}") from None


# ------------------------------------------------------------------ the production model, to serving


class ProductionModelEvent(BaseModel):
    """The ``continuous_learning.production_model`` Asset event's ``extra``: which model now serves.

    ``promote`` and ``model_rollback`` emit it; ``deploy_production`` reads it and deploys ``model_uri``
    (or, for a LoRA version whose base is already served, loads ``adapter_uri`` without a restart).
    ``revision`` is the ``production`` alias revision that made this version production: a deployment
    of a lower revision than the one serving is superseded.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: Literal[1] = 1
    version: str = Field(pattern=r"^v\d+$")
    model_uri: str
    revision: int = Field(ge=1)
    previous_version: str | None = None
    reason: str = ""
    run_id: str | None = None
    adapter_uri: str | None = Field(None, description="LoRA versions: the adapter beside the merged model")
    base_model_uri: str | None = Field(None, description="LoRA versions: the model the adapter applies to")
    sagemaker_model_package_arn: str | None = None

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> ProductionModelEvent:
        try:
            return cls.model_validate(dict(extra))
        except ValidationError as exc:
            raise ContractError(f"not a valid production-model event ({dict(extra)!r}): {exc}") from None
