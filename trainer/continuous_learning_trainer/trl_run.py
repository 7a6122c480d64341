"""What the CPU engine's TRL runs share (GRPO in :mod:`continuous_learning_trainer.cpu_engine`, SFT in
:mod:`continuous_learning_trainer.sft`): the base model, LoRA, checkpoints to storage and back, and the
run's end: the servable model, the adapter and ``result.json``.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from continuous_learning import storage
from continuous_learning.contracts import LoraOptions, RunSpec, TrainResult, result_uri

from continuous_learning_trainer.prompts import prepare_tokenizer
from continuous_learning_trainer.stopping import CheckpointClock, StopRequest, stop_reason

log = logging.getLogger(__name__)


def versions() -> dict[str, str]:
    import peft
    import torch
    import transformers
    import trl

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "peft": peft.__version__,
    }


def report_to(spec: RunSpec) -> str:
    """TRL's ``report_to`` for the run: ``"mlflow"`` when the spec has an MLflow run (then MLflow's
    environment is set for TRL's callback: it attaches to that run and logs every step's metrics),
    else ``"none"``. Params are the spec's, logged by the training task: TRL's own (its arguments, some
    of which name this attempt's temporary folders) stay out (``MLFLOW_MAX_LOG_PARAMS=0``), so a second
    attempt does not try to change a param, which MLflow refuses."""
    if spec.tracking is None:
        return "none"
    os.environ.update(spec.tracking.environment())
    os.environ["MLFLOW_MAX_LOG_PARAMS"] = "0"
    return "mlflow"


def lora_config(options: LoraOptions) -> Any:
    """peft's LoraConfig for ``options`` (None when LoRA is off)."""
    if not options.enabled:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=options.rank,
        lora_alpha=options.alpha,  # type: ignore[arg-type]  # peft annotates int; scaling is alpha / r
        lora_dropout=options.dropout,
        target_modules=options.target_modules,
        task_type="CAUSAL_LM",
    )


def save_trained(trained: Any, tokenizer: Any, output_uri: str, work: Path) -> tuple[str, str | None]:
    """Upload the trained model to ``<output_uri>/model/`` (URIs of model and adapter returned).

    A LoRA model (a peft model) also writes its adapter to ``<output_uri>/adapter/``; ``model/`` is then
    the merged model (``merge_and_unload``), a plain checkpoint that serves as it is.
    """
    from peft import PeftModel

    adapter_uri = None
    if isinstance(trained, PeftModel):
        adapter_dir = work / "adapter"
        trained.save_pretrained(str(adapter_dir))
        adapter_uri = storage.join(output_uri, "adapter")
        storage.upload_dir(adapter_dir, adapter_uri)
        trained = trained.merge_and_unload()
    final = work / "final"
    trained.save_pretrained(final)
    tokenizer.save_pretrained(final)
    model_uri = storage.join(output_uri, "model")
    storage.upload_dir(final, model_uri)
    return model_uri, adapter_uri


def latest_checkpoint(uri: str) -> str | None:
    """The newest complete TRL checkpoint under ``<uri>/checkpoints`` (one with its trainer state)."""
    steps = set()
    for obj in storage.list_objects(storage.join(uri, "checkpoints")):
        part = obj.uri.removeprefix(storage.join(uri, "checkpoints") + "/").split("/", 1)[0]
        if part.startswith("checkpoint-") and obj.uri.endswith("trainer_state.json"):
            steps.add(int(part.removeprefix("checkpoint-")))
    return storage.join(uri, "checkpoints", f"checkpoint-{max(steps)}") if steps else None


def checkpoint_uploader(output_dir: Path, output_uri: str) -> Any:
    """A TrainerCallback that uploads every checkpoint TRL saves under ``output_dir`` to
    ``<output_uri>/checkpoints/``."""
    from transformers import TrainerCallback

    checkpoints_uri = storage.join(output_uri, "checkpoints")

    class UploadCheckpoint(TrainerCallback):  # type: ignore[misc]
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            name = f"checkpoint-{state.global_step}"
            storage.upload_dir(output_dir / name, storage.join(checkpoints_uri, name))
            log.info("checkpoint %s uploaded to %s", name, checkpoints_uri)

    return UploadCheckpoint()


def stop_callback(stop: StopRequest, every_seconds: float | None) -> Any:
    """A TrainerCallback that checkpoints by wall time (``every_seconds`` since the last save) as well
    as by step, and ends training with a checkpoint when ``stop`` says so (a signal, or the time limit
    would pass during the next step); ``stop_reason`` is then set for the run's result."""
    from transformers import TrainerCallback

    clock = CheckpointClock(every_seconds)

    class StopAndCheckpoint(TrainerCallback):  # type: ignore[misc]
        stop_reason: str | None = None
        _step_started = 0.0
        _longest_step = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._step_started = time.monotonic()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._longest_step = max(self._longest_step, time.monotonic() - self._step_started)
            if clock.due():
                control.should_save = True
            reason = stop.should_stop(self._longest_step)
            if reason and state.global_step < state.max_steps and self.stop_reason is None:
                control.should_save = True
                control.should_training_stop = True
                self.stop_reason = stop_reason(reason, state.global_step)

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            clock.saved()

    return StopAndCheckpoint()


def resume_checkpoint(spec: RunSpec, output_dir: Path) -> str | None:
    """The local copy of the run's latest uploaded checkpoint when ``spec.resume`` (else None)."""
    latest = latest_checkpoint(spec.output_uri) if spec.resume else None
    if not latest:
        return None
    log.info("resuming from %s", latest)
    return str(storage.download_dir(latest, output_dir / storage.basename(latest)))


def load_base(spec: RunSpec, work: Path) -> tuple[Any, Any]:
    """(model, tokenizer) of the run's base model, fp32 on the CPU; pad token set."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir = storage.download_dir(spec.base_model_uri, work / "base")
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(base_dir))
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def log_history(trainer: Any, key: str) -> list[dict[str, float]]:
    """The numeric values of TRL's log entries that carry ``key`` (``reward`` for GRPO, ``loss`` for SFT)."""
    return [
        {k: float(v) for k, v in entry.items() if isinstance(v, (int, float))}
        for entry in trainer.state.log_history
        if key in entry
    ]


def finish(
    spec: RunSpec,
    trainer: Any,
    tokenizer: Any,
    work: Path,
    metrics: dict[str, float],
    history: list[dict[str, float]],
    started_at: datetime,
    stopped: str | None = None,
) -> TrainResult:
    """The run's end: the trained model uploaded (:func:`save_trained`) and its TrainResult, at the step
    TRL reached, written to ``<output_uri>/result.json``; ``stopped`` (the stop callback's reason): the
    run ended early, its status is ``stopped``."""
    model_uri, adapter_uri = save_trained(trainer.model, tokenizer, spec.output_uri, work)
    result = TrainResult.succeeded(
        spec,
        model_uri=model_uri,
        adapter_uri=adapter_uri,
        steps=int(trainer.state.global_step),
        metrics=metrics,
        history=history,
        versions=versions(),
        started_at=started_at,
        stop_reason=stopped,
    )
    result.write(result_uri(spec.output_uri))
    return result
