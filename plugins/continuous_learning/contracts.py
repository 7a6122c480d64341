"""Versioned JSON documents between the Airflow side and the trainer (a spec in, a result out)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from continuous_learning import storage
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ContractError(ValueError):
    """A spec or result document is missing or does not match its schema."""


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


class RunSpec(_Document):
    schema_version: Literal[1] = 1
    run_id: str = Field(min_length=1)
    engine: Literal["cpu", "verl"]
    algorithm: Literal["grpo", "ppo"] = "grpo"
    dataset: DatasetRef
    base_model_uri: str
    base_model_version: str
    output_uri: str
    hyperparameters: Hyperparameters
    resources: Resources = Resources()
    reward_weights: RewardWeights = RewardWeights()
    resume: bool = True
    verl: VerlOptions = VerlOptions()


class TrainResult(_Document):
    schema_version: Literal[1] = 1
    run_id: str
    status: Literal["succeeded", "failed"]
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

    @classmethod
    def succeeded(
        cls,
        spec: RunSpec,
        *,
        model_uri: str,
        steps: int,
        metrics: dict[str, float],
        history: list[dict[str, float]],
        versions: dict[str, str],
        started_at: datetime,
    ) -> TrainResult:
        """The result both engines write for a finished run of ``spec``."""
        return cls(
            run_id=spec.run_id,
            status="succeeded",
            model_uri=model_uri,
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
