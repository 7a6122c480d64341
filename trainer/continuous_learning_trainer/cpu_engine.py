"""CPU engine: TRL's SFTTrainer for the day-0 warm start, TRL's GRPOTrainer for RL updates.

It takes the same RunSpec as the VeRL engine and writes the same layout under ``output_uri``:
``model/`` (a Hugging Face checkpoint), ``checkpoints/`` (resumable), ``result.json``.
"""

from __future__ import annotations

import io
import json
import logging
import random
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from continuous_learning import storage
from continuous_learning.contracts import BootstrapSpec, RewardWeights, RunSpec, TrainResult

from continuous_learning_trainer.chat import END, render_prompt
from continuous_learning_trainer.rewards import format_reference, score_response

log = logging.getLogger(__name__)


def load_prompts(uri: str) -> list[dict[str, Any]]:
    """VeRL-format rows, with the prompt rendered as text and the reference kept as JSON."""
    table = pq.read_table(io.BytesIO(storage.read_bytes(uri)))
    rows = []
    for row in table.to_pylist():
        messages = [{k: v for k, v in m.items() if v is not None} for m in row["prompt"]]
        rows.append(
            {
                "prompt": render_prompt(messages),
                "ground_truth": row["reward_model"]["ground_truth"],
                "tools_json": row["extra_info"]["tools_json"] or "",
                "interaction_id": row["extra_info"]["interaction_id"],
                "agent": row["extra_info"]["agent"],
                "ability": row["ability"],
            }
        )
    return rows


def _versions() -> dict[str, str]:
    import torch
    import transformers
    import trl

    return {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__}


def make_reward_function(weights: RewardWeights) -> Any:
    def agent_reward(
        completions: list[str], ground_truth: list[str], tools_json: list[str], **_: Any
    ) -> list[float]:
        scores = []
        for completion, truth, tools in zip(completions, ground_truth, tools_json, strict=True):
            text = completion.split(END, 1)[0]
            scores.append(
                score_response(text, json.loads(truth), json.loads(tools) if tools else None, weights).total
            )
        return scores

    return agent_reward


def bootstrap(spec: BootstrapSpec) -> str:
    """Train a tokenizer on the corpus, build a tiny Qwen2 model, warm-start it with SFT, upload it."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from continuous_learning_trainer.tiny_model import build_model, train_tokenizer

    torch.set_num_threads(spec.cpu_threads)
    rows = load_prompts(spec.dataset.train_uri)
    if not rows:
        raise ValueError(f"no training rows in {spec.dataset.train_uri}: cannot build a base model")
    corpus = [r["prompt"] + format_reference(json.loads(r["ground_truth"])) + END for r in rows]
    tokenizer = train_tokenizer(corpus)
    model = build_model(tokenizer, spec.seed)
    log.info("base model: %d parameters, vocabulary %d", model.num_parameters(), len(tokenizer))
    rng = random.Random(spec.seed)
    warm = rng.sample(rows, max(1, int(len(rows) * spec.warm_start_share)))
    with tempfile.TemporaryDirectory(prefix="cl-bootstrap-") as tmp:
        out = Path(tmp) / "model"
        if spec.warm_start_steps > 0:
            data = Dataset.from_list(
                [
                    {"prompt": r["prompt"], "completion": format_reference(json.loads(r["ground_truth"]))}
                    for r in warm
                ]
            )
            config = SFTConfig(
                output_dir=str(Path(tmp) / "sft"),
                max_steps=spec.warm_start_steps,
                per_device_train_batch_size=16,
                learning_rate=2e-3,
                lr_scheduler_type="cosine",
                warmup_steps=5,
                logging_steps=20,
                save_strategy="no",
                report_to="none",
                use_cpu=True,
                seed=spec.seed,
                max_length=256,
                dataloader_num_workers=0,
                disable_tqdm=True,
            )
            trainer = SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer)
            trainer.train()
        trainer_model: Any = model if spec.warm_start_steps <= 0 else trainer.model
        trainer_model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        uri = storage.join(spec.output_uri, "model")
        storage.upload_dir(out, uri)
    log.info(
        "base model written to %s (warm start: %d steps on %d rows)", uri, spec.warm_start_steps, len(warm)
    )
    return uri


def _latest_checkpoint(uri: str) -> str | None:
    steps = set()
    for obj in storage.list_objects(storage.join(uri, "checkpoints")):
        part = obj.uri.removeprefix(storage.join(uri, "checkpoints") + "/").split("/", 1)[0]
        if part.startswith("checkpoint-") and obj.uri.endswith("trainer_state.json"):
            steps.add(int(part.removeprefix("checkpoint-")))
    return storage.join(uri, "checkpoints", f"checkpoint-{max(steps)}") if steps else None


def train(spec: RunSpec) -> TrainResult:
    """GRPO updates from the base model on the spec's train split; writes model and result."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    started = datetime.now(UTC)
    torch.set_num_threads(spec.resources.cpu_threads)
    hp = spec.hyperparameters
    rows = load_prompts(spec.dataset.train_uri)
    if not rows:
        raise ValueError(f"no training rows in {spec.dataset.train_uri}")
    with tempfile.TemporaryDirectory(prefix="cl-train-") as tmp:
        base_dir = storage.download_dir(spec.base_model_uri, Path(tmp) / "base")
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        dataset = Dataset.from_list(rows).shuffle(seed=hp.seed)
        output_dir = Path(tmp) / "run"
        checkpoints_uri = storage.join(spec.output_uri, "checkpoints")

        class UploadCheckpoint(TrainerCallback):  # type: ignore[misc]
            def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                name = f"checkpoint-{state.global_step}"
                storage.upload_dir(output_dir / name, storage.join(checkpoints_uri, name))
                log.info("checkpoint %s uploaded to %s", name, checkpoints_uri)

        config = GRPOConfig(
            output_dir=str(output_dir),
            use_cpu=True,
            max_steps=hp.max_steps,
            learning_rate=hp.learning_rate,
            per_device_train_batch_size=hp.prompts_per_step * hp.samples_per_prompt,
            num_generations=hp.samples_per_prompt,
            max_completion_length=hp.max_completion_tokens,
            temperature=hp.temperature,
            beta=hp.kl_coef,
            logging_steps=1,
            save_strategy="steps",
            save_steps=hp.checkpoint_every,
            save_total_limit=2,
            report_to="none",
            seed=hp.seed,
            dataloader_num_workers=0,
            disable_tqdm=True,
            lr_scheduler_type="constant",
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[make_reward_function(spec.reward_weights)],
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[UploadCheckpoint()],
        )
        resume_from = None
        if spec.resume:
            latest = _latest_checkpoint(spec.output_uri)
            if latest:
                resume_from = str(storage.download_dir(latest, output_dir / storage.basename(latest)))
                log.info("resuming from %s", latest)
        trainer.train(resume_from_checkpoint=resume_from)
        history = [
            {k: float(v) for k, v in entry.items() if isinstance(v, (int, float))}
            for entry in trainer.state.log_history
            if "reward" in entry
        ]
        final = Path(tmp) / "final"
        trained: Any = trainer.model
        trained.save_pretrained(final)
        tokenizer.save_pretrained(final)
        model_uri = storage.join(spec.output_uri, "model")
        storage.upload_dir(final, model_uri)
    rewards = [h["reward"] for h in history]
    window = max(1, len(rewards) // 4)
    metrics = {
        "reward_first": sum(rewards[:window]) / window if rewards else 0.0,
        "reward_last": sum(rewards[-window:]) / window if rewards else 0.0,
        "loss_last": history[-1].get("loss", 0.0) if history else 0.0,
        "train_rows": float(len(rows)),
    }
    result = TrainResult.succeeded(
        spec,
        model_uri=model_uri,
        steps=int(trainer.state.global_step),
        metrics=metrics,
        history=history,
        versions=_versions(),
        started_at=started,
    )
    result.write(storage.join(spec.output_uri, "result.json"))
    return result
