"""One VeRL run, end to end: data, resume, VeRL, merge, upload, ``result.json``
(see :mod:`continuous_learning_trainer.verl_engine`)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from continuous_learning import storage
from continuous_learning.contracts import RunSpec, TrainResult, result_uri

from continuous_learning_trainer.stopping import StopRequest, stop_reason
from continuous_learning_trainer.verl_engine.artifacts import publish_checkpoint
from continuous_learning_trainer.verl_engine.checkpoints import (
    latest_local_step,
    restore_checkpoint,
    upload_latest_checkpoint,
    write_upload_manifest,
)
from continuous_learning_trainer.verl_engine.data import (
    chat_tokenizer,
    prepare_dataset,
    prepare_sft_dataset,
    write_agent_loop_config,
    write_tool_config,
)
from continuous_learning_trainer.verl_engine.launch import CommandRunner, TrainingStopped, run_command
from continuous_learning_trainer.verl_engine.layout import Layout
from continuous_learning_trainer.verl_engine.overrides import (
    WORKER_ENV,
    build_overrides,
    tracking_env,
    trainer_command,
    validate_for_verl,
)
from continuous_learning_trainer.verl_engine.profiles import model_parameters, profile_for
from continuous_learning_trainer.verl_engine.wall_clock import read_stopped

log = logging.getLogger(__name__)

IMAGE_DIGEST_ENV = "CL_IMAGE_DIGEST"


def read_history(metrics_file: Path, *earlier: Path) -> list[dict[str, float]]:
    """VeRL's ``file`` logger: one JSON line per step, ``{"step": N, "data": {metric: value}}``.

    ``earlier`` files (attempts before a resume) are read first; a step logged again by a later attempt
    (the steps between its checkpoint and the crash are re-run) replaces the earlier entry."""
    by_step: dict[float, dict[str, float]] = {}
    for path in (*earlier, metrics_file):
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            row = {k: float(v) for k, v in entry.get("data", {}).items() if isinstance(v, (int, float))}
            row["step"] = float(entry.get("step", len(by_step) + 1))
            by_step[row["step"]] = row
    return [by_step[s] for s in sorted(by_step)]


def keep_earlier_metrics(layout: Layout) -> None:
    """Move the last attempt's metrics aside before VeRL starts again (its logger truncates the file)."""
    if layout.metrics.exists() and layout.metrics.stat().st_size:
        with layout.earlier_metrics.open("a") as out:
            out.write(layout.metrics.read_text().rstrip("\n") + "\n")
        layout.metrics.unlink()


def summarise(history: list[dict[str, float]], train_rows: int) -> dict[str, float]:
    """Run metrics from VeRL's per-step log: reward (RL) and loss (SFT, ``train/loss``) at the start and
    the end (means over the first and last quarter of the steps)."""
    rewards = [h["critic/score/mean"] for h in history if "critic/score/mean" in h]
    window = max(1, len(rewards) // 4)
    last = history[-1] if history else {}
    summary = {
        "reward_first": sum(rewards[:window]) / window if rewards else 0.0,
        "reward_last": sum(rewards[-window:]) / window if rewards else 0.0,
        "response_length_last": last.get("response_length/mean", 0.0),
        "step_seconds_last": last.get("timing_s/step", 0.0),
        "train_rows": float(train_rows),
    }
    losses = [h["train/loss"] for h in history if "train/loss" in h]
    if losses:
        loss_window = max(1, len(losses) // 4)
        summary["loss_first"] = sum(losses[:loss_window]) / loss_window
        summary["loss_last"] = sum(losses[-loss_window:]) / loss_window
    return summary


def versions() -> dict[str, str]:
    found = {}
    for dist in ("verl", "sglang", "sglang-kernel", "flashinfer-python", "torch", "transformers", "ray"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "absent"
    found["image"] = os.environ.get(IMAGE_DIGEST_ENV, "unknown")
    return found


# --------------------------------------------------------------------------- the run


def train(
    spec: RunSpec, *, runner: CommandRunner = run_command, stop: StopRequest | None = None
) -> TrainResult:
    """Run the spec with VeRL; on failure write a ``failed`` TrainResult, then raise.

    ``stop`` (a signal, the time limit; default: ``hyperparameters.max_seconds`` from now) ends VeRL early:
    the latest checkpoint is then merged and the result is ``stopped``."""
    started = datetime.now(UTC)
    stop = stop or StopRequest(spec.hyperparameters.max_seconds)
    validate_for_verl(spec)
    if spec.tracking is not None and importlib.util.find_spec("mlflow") is None:
        # VeRL's mlflow logger imports mlflow unguarded: without it the run would fail at start-up. The
        # training task then logs this run's history (result.json) to MLflow after the job instead.
        log.warning(
            "mlflow is not installed in this image: VeRL logs without it (metrics sent after the job)"
        )
        spec = spec.model_copy(update={"tracking": None})
    work_root = spec.verl.work_dir or os.environ.get("CL_WORK_DIR")
    tmp = None
    if work_root:
        layout = Layout(Path(work_root) / spec.run_id)
    else:
        tmp = tempfile.mkdtemp(prefix="cl-verl-")
        layout = Layout(Path(tmp))
    try:
        result = _train(spec, layout, runner, stop, started)
    except Exception as exc:
        _without_model(spec, layout, started, "failed", error=f"{type(exc).__name__}: {exc}"[:2000]).write(
            result_uri(spec.output_uri)
        )
        raise
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def _without_model(
    spec: RunSpec,
    layout: Layout,
    started: datetime,
    status: Literal["stopped", "failed"],
    *,
    steps: int = 0,
    error: str | None = None,
    stop_reason: str | None = None,
) -> TrainResult:
    """The result of a run that has no merged model (yet): failed, or stopped before its merge."""
    return TrainResult(
        run_id=spec.run_id,
        status=status,
        model_uri=None,
        base_model_version=spec.base_model_version,
        dataset_id=spec.dataset.dataset_id,
        steps=steps,
        metrics={},
        history=read_history(layout.metrics, layout.earlier_metrics),
        versions=versions(),
        started_at=started,
        finished_at=datetime.now(UTC),
        error=error,
        stop_reason=stop_reason,
    )


def _record_stop(spec: RunSpec, layout: Layout, started: datetime, reason: str) -> None:
    """A stopped run's result before its merge: a kill during the merge leaves this, and the checkpoint
    resumable; the merged result replaces it."""
    step = latest_local_step(layout.checkpoints)
    if step is None:
        note = f"{reason}: stopped before the first checkpoint, nothing to merge"
    else:
        note = f"{reason}: stopped at step {step}; merging its checkpoint (resumable from checkpoints/)"
    _without_model(spec, layout, started, "stopped", steps=step or 0, stop_reason=note).write(
        result_uri(spec.output_uri)
    )


def _prepare_data(spec: RunSpec, layout: Layout, tokenizer: Any) -> tuple[int, bool, dict[str, int]]:
    """Write the run's data files; (train rows, whether rollouts have tools, rows left out by reason)."""
    opts, hp = spec.verl, spec.hyperparameters
    if spec.algorithm == "sft":
        sft = prepare_sft_dataset(
            spec.dataset.train_uri,
            layout.sft_train_file,
            spec.tool_call_format,
            tokenizer=tokenizer,
            max_length=opts.max_prompt_length + hp.max_completion_tokens,
        )
        return sft.rows, False, sft.skipped
    registry: dict[str, dict[str, Any]] = {}
    train = prepare_dataset(
        spec.dataset.train_uri,
        layout.train_file,
        registry,
        tokenizer=tokenizer,
        max_prompt_length=opts.max_prompt_length,
    )
    prepare_dataset(
        spec.dataset.validation_uri,
        layout.val_file,
        registry,
        tokenizer=tokenizer,
        max_prompt_length=opts.max_prompt_length,
    )
    if registry:
        write_tool_config(list(registry.values()), layout.tool_config)
        write_agent_loop_config(layout.agent_loops)
    return train.rows, bool(registry), train.skipped


def _train(
    spec: RunSpec, layout: Layout, runner: CommandRunner, stop: StopRequest, started: datetime
) -> TrainResult:
    layout.root.mkdir(parents=True, exist_ok=True)
    if not (layout.base_model / "config.json").exists():
        storage.download_dir(spec.base_model_uri.rstrip("/") + "/", layout.base_model)
    train_rows, has_tools, skipped = _prepare_data(spec, layout, chat_tokenizer(layout.base_model))
    checkpoints_uri = storage.join(spec.output_uri, "checkpoints")
    keep = spec.verl.max_checkpoints_to_keep
    if spec.resume:
        restore_checkpoint(checkpoints_uri, layout.checkpoints)
    write_upload_manifest(layout.checkpoints, checkpoints_uri, keep)
    read_stopped(layout.checkpoints)  # an earlier attempt's note says nothing about this one
    model_config = json.loads((layout.base_model / "config.json").read_text())
    parameters = model_parameters(model_config)
    log.info(
        "performance profile %s (gpu class %s, base model ~%s parameters)",
        profile_for(spec),
        spec.resources.gpu_class or "unknown",
        f"{parameters:,}" if parameters else "?",
    )
    overrides = build_overrides(
        spec,
        layout,
        has_tools=has_tools,
        train_rows=train_rows,
        model_config=model_config,
        stop_at=stop.stop_at,
    )
    env = {**os.environ, **WORKER_ENV, "VERL_FILE_LOGGER_PATH": str(layout.metrics), "PYTHONUNBUFFERED": "1",
           **tracking_env(spec)}  # fmt: skip
    env.setdefault("RAY_ADDRESS", "auto")  # the cluster this job runs in; never start a new one
    keep_earlier_metrics(layout)
    stopped: str | None = None
    try:
        runner(trainer_command(spec, overrides), env, stop)
    except TrainingStopped as exc:
        stopped = exc.reason
        # recorded first: Ray's job stop sends SIGKILL 3 s after its SIGTERM (RAY_JOB_STOP_WAIT_TIME_S)
        _record_stop(spec, layout, started, stopped)
    finally:
        # the SFT trainer has no checkpoint callback, and a stop may cut the callback's upload short:
        # make the last checkpoint durable now
        if spec.algorithm == "sft" or stopped:
            try:
                upload_latest_checkpoint(layout.checkpoints, checkpoints_uri, keep)
            except Exception:
                log.exception("could not upload the last checkpoint in %s", layout.checkpoints)
    note = read_stopped(layout.checkpoints)  # the wall-clock trainer ended before the deadline
    if note and not stopped:
        stopped = str(note["reason"])
        _record_stop(spec, layout, started, stopped)

    step = latest_local_step(layout.checkpoints)
    if step is None and stopped:
        return TrainResult.read(result_uri(spec.output_uri))  # _record_stop's: nothing to merge
    if step is None:
        raise RuntimeError(f"VeRL finished without a checkpoint in {layout.checkpoints}")
    model_uri, adapter_uri, model_metrics = publish_checkpoint(spec, layout, step, runner, env)
    history = read_history(layout.metrics, layout.earlier_metrics)
    result = TrainResult.succeeded(
        spec,
        model_uri=model_uri,
        adapter_uri=adapter_uri,
        steps=step,
        metrics={
            **summarise(history, train_rows),
            **model_metrics,
            "rows_left_out": float(sum(skipped.values())),
        },
        history=history,
        versions=versions(),
        started_at=started,
        stop_reason=stop_reason(stopped, step) if stopped else None,
    )
    result.write(result_uri(spec.output_uri))
    return result
