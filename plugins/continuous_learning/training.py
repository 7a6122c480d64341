"""One training run's documents: dataset window, bootstrap/run/eval specs, lineage.

These functions are what the Airflow operators call; they hold no Airflow state.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from continuous_learning import storage
from continuous_learning.config import Settings
from continuous_learning.contracts import (
    BootstrapSpec,
    DatasetRef,
    EvalSpec,
    Hyperparameters,
    ImitationOptions,
    LoraOptions,
    Resources,
    RewardFunction,
    RunSpec,
    ToolCallFormat,
    TrackingRef,
)
from continuous_learning.data.reward_dataset import assemble_window

TRAINER_MODULE = "continuous_learning_trainer"


class NotEnoughData(RuntimeError):
    """The training window has fewer rows than configured: a reason to skip, not a failure."""


@dataclass(frozen=True)
class RunPaths:
    root: str

    @property
    def train(self) -> str:
        return storage.join(self.root, "train")

    @property
    def evaluation(self) -> str:
        return storage.join(self.root, "eval")

    @property
    def bootstrap(self) -> str:
        return storage.join(self.root, "bootstrap")

    @property
    def gate(self) -> str:
        return storage.join(self.root, "gate.json")

    def spec(self, name: str) -> str:
        return storage.join(self.root, "specs", f"{name}.json")


def safe_run_id(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).strip("_")[:120]


def run_paths(settings: Settings, run_id: str) -> RunPaths:
    return RunPaths(storage.join(settings.storage.runs_uri, safe_run_id(run_id)))


def assemble_training_dataset(settings: Settings, end: date) -> DatasetRef:
    dataset = assemble_window(
        settings.storage.data_uri,
        end,
        settings.dataset.lookback_days,
        config={
            "validation_share": settings.dataset.validation_share,
            "test_share": settings.dataset.test_share,
        },
    )
    if dataset.counts["train"] < settings.dataset.min_train_rows:
        raise NotEnoughData(
            f"training window ending {end} ({settings.dataset.lookback_days} days) has "
            f"{dataset.counts['train']} train rows; at least {settings.dataset.min_train_rows} are needed"
        )
    if dataset.counts["test"] == 0:
        raise NotEnoughData(f"training window ending {end} has no test rows to evaluate on")
    return DatasetRef(
        dataset_id=dataset.dataset_id,
        train_uri=dataset.split_uri("train"),
        validation_uri=dataset.split_uri("validation"),
        test_uri=dataset.split_uri("test"),
        manifest_uri=storage.join(dataset.uri, "manifest.json"),
    )


def trainer_entrypoint(command: str, spec_uri: str) -> str:
    return f"python -m {TRAINER_MODULE} {command} --spec {shlex.quote(spec_uri)}"


def write_bootstrap_spec(settings: Settings, dataset: DatasetRef, run_id: str) -> str:
    paths = run_paths(settings, run_id)
    spec = BootstrapSpec(
        run_id=run_id,
        dataset=dataset,
        output_uri=paths.bootstrap,
        warm_start_steps=settings.trainer.warm_start_steps,
        warm_start_share=settings.trainer.warm_start_share,
        seed=settings.trainer.seed,
        cpu_threads=settings.trainer.threads,
    )
    return spec.write(paths.spec("bootstrap"))


def write_import_spec(settings: Settings, dataset: DatasetRef, run_id: str) -> str:
    """The day-0 import of ``settings.model`` (see continuous_learning.models.onboarding)."""
    from continuous_learning.models.onboarding import import_spec

    paths = run_paths(settings, run_id)
    m = settings.model
    imitation = None
    if m.imitate_agent_steps > 0:
        imitation = ImitationOptions(
            dataset=dataset,
            steps=m.imitate_agent_steps,
            learning_rate=m.imitate_agent_learning_rate,
            seed=settings.trainer.seed,
        )
    spec = import_spec(settings, run_id, storage.join(paths.bootstrap, "model"), imitation=imitation)
    return spec.write(paths.spec("import"))


def reward_function(settings: Settings) -> RewardFunction:
    return RewardFunction(function=settings.reward.function, kwargs=dict(settings.reward.kwargs))


def write_run_spec(
    settings: Settings,
    dataset: DatasetRef,
    base_model_uri: str,
    base_version: str,
    run_id: str,
    tool_call_format: ToolCallFormat = "hermes",
    tracking: TrackingRef | None = None,
    cluster_resources: Mapping[str, Any] | None = None,
) -> str:
    """The training job's spec; ``tracking``: the MLflow run its engine reports to (None: off);
    ``cluster_resources``: what the job's cluster decides (nodes, GPUs per node, GPU class; see
    ``KubeRayClusterRef.trainer_resources``), written once with the rest."""
    paths = run_paths(settings, run_id)
    t = settings.trainer
    spec = RunSpec(
        run_id=run_id,
        engine=t.engine,
        algorithm=t.algorithm,
        dataset=dataset,
        base_model_uri=base_model_uri,
        base_model_version=base_version,
        output_uri=paths.train,
        hyperparameters=Hyperparameters(
            learning_rate=t.learning_rate,
            max_steps=t.max_steps,
            samples_per_prompt=t.samples_per_prompt,
            prompts_per_step=t.prompts_per_step,
            max_completion_tokens=t.max_completion_tokens,
            temperature=t.temperature,
            seed=t.seed,
            checkpoint_every_seconds=t.checkpoint_every_seconds,
            max_seconds=max(settings.compute.job_timeout_s - t.stop_reserve_s, 60.0),
        ),
        resources=Resources(cpu_threads=t.threads, **(cluster_resources or {})),
        reward=reward_function(settings),
        tool_call_format=tool_call_format,
        lora=LoraOptions(**settings.model.lora.model_dump()),
        tracking=tracking,
    )
    return spec.write(paths.spec("train"))


def write_eval_spec(
    settings: Settings,
    dataset: DatasetRef,
    models: dict[str, str],
    run_id: str,
    tool_call_format: ToolCallFormat = "hermes",
) -> str:
    paths = run_paths(settings, run_id)
    spec = EvalSpec(
        run_id=run_id,
        prompts_uri=dataset.test_uri,
        models=models,
        max_prompts=settings.evaluation.max_prompts,
        max_completion_tokens=settings.trainer.max_completion_tokens,
        output_uri=paths.evaluation,
        engine="cpu" if settings.trainer.engine == "cpu" else "sglang",
        cpu_threads=settings.trainer.threads,
        reward=reward_function(settings),
        tool_call_format=tool_call_format,
    )
    return spec.write(paths.spec("eval"))


def job_environment(settings: Settings) -> dict[str, Any]:
    """Environment for trainer jobs: the settings env and storage endpoint travel with the job."""
    env = {"CL_ENV": settings.env, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    if os.environ.get("CL_S3_ENDPOINT_URL"):
        env["CL_S3_ENDPOINT_URL"] = os.environ["CL_S3_ENDPOINT_URL"]
    return env
