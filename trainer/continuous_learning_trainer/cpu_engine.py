"""CPU engine: TRL's SFTTrainer for the day-0 warm start, TRL's GRPOTrainer for RL updates.

It takes the same RunSpec as the VeRL engine and writes the same layout under ``output_uri``:
``model/`` (a Hugging Face checkpoint; with LoRA the merged model, and ``adapter/`` beside it),
``checkpoints/`` (resumable), ``result.json``. ``algorithm: sft`` runs :mod:`continuous_learning_trainer.sft`.

Prompts are rendered in the model's own chat template and completions cut at its eos
(:mod:`continuous_learning_trainer.prompts`); the reward is the run's
(:mod:`continuous_learning_trainer.reward_function`); what GRPO and SFT runs share (base model, LoRA,
checkpoints, the result) is in :mod:`continuous_learning_trainer.trl_run`.
"""

from __future__ import annotations

import json
import logging
import random
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from continuous_learning import storage
from continuous_learning.contracts import (
    BootstrapSpec,
    RewardFunction,
    RewardWeights,
    RunSpec,
    TrainResult,
)

from continuous_learning_trainer import reward_function, trl_run
from continuous_learning_trainer.chat import END
from continuous_learning_trainer.prompts import (
    decode_completion,
    load_prompts,
    load_rows,
    prompt_rows,
    stop_token_ids,
)
from continuous_learning_trainer.rewards import format_reference
from continuous_learning_trainer.stopping import StopRequest

log = logging.getLogger(__name__)


def make_reward_function(
    reward: RewardFunction,
    weights: RewardWeights,
    tool_call_format: str = "hermes",
    tokenizer: Any = None,
    stop_ids: list[int] | None = None,
) -> Any:
    """TRL's reward callable: each completion cut at eos and scored by the run's reward
    (:func:`continuous_learning_trainer.reward_function.score`)."""

    def agent_reward(
        completions: list[str],
        ground_truth: list[str],
        tools_json: list[str],
        completion_ids: list[list[int]] | None = None,
        **_: Any,
    ) -> list[float]:
        if completion_ids is not None and tokenizer is not None:
            texts = [decode_completion(tokenizer, ids, stop_ids or []) for ids in completion_ids]
        else:
            texts = [c.split(END, 1)[0] for c in completions]
        return [
            reward_function.score(
                text,
                json.loads(truth),
                json.loads(tools) if tools else None,
                reward=reward,
                weights=weights,
                tool_call_format=tool_call_format,
            )
            for text, truth, tools in zip(texts, ground_truth, tools_json, strict=True)
        ]

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


def train(spec: RunSpec, stop: StopRequest | None = None) -> TrainResult:
    """A candidate from the base model on the spec's train split: GRPO updates (TRL), or SFT on the
    references (``algorithm: sft``, :mod:`continuous_learning_trainer.sft`); full fine-tuning or LoRA.
    Writes ``model/`` (and ``adapter/`` with LoRA), ``checkpoints/`` and ``result.json``.

    Checkpoints every ``checkpoint_every`` steps and ``checkpoint_every_seconds``; when ``stop`` says so
    (a signal, ``max_seconds``) training ends at the step's checkpoint and the result is ``stopped``."""
    if spec.algorithm == "sft":
        from continuous_learning_trainer.sft import train_sft

        return train_sft(spec, stop)
    if spec.algorithm != "grpo":
        log.warning("the CPU engine has no %s: running GRPO (use engine verl for PPO)", spec.algorithm)
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    started = datetime.now(UTC)
    stop = stop or StopRequest(spec.hyperparameters.max_seconds)
    torch.set_num_threads(spec.resources.cpu_threads)
    hp = spec.hyperparameters
    raw = load_rows(spec.dataset.train_uri)
    if not raw:
        raise ValueError(f"no training rows in {spec.dataset.train_uri}")
    if spec.reward.function:
        reward_function.load_reward(spec.reward)  # a bad name fails here, before any model is loaded
    with tempfile.TemporaryDirectory(prefix="cl-train-") as tmp:
        model, tokenizer = trl_run.load_base(spec, Path(tmp))
        rows = prompt_rows(raw, tokenizer)
        dataset = Dataset.from_list(rows).shuffle(seed=hp.seed)
        output_dir = Path(tmp) / "run"
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
            report_to=trl_run.report_to(spec),
            seed=hp.seed,
            dataloader_num_workers=0,
            disable_tqdm=True,
            lr_scheduler_type="constant",
        )
        stopper = trl_run.stop_callback(stop, hp.checkpoint_every_seconds)
        reward = make_reward_function(
            spec.reward,
            spec.reward_weights,
            spec.tool_call_format,
            tokenizer,
            stop_token_ids(tokenizer, model.generation_config),
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[reward],
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[trl_run.checkpoint_uploader(output_dir, spec.output_uri), stopper],
            peft_config=trl_run.lora_config(spec.lora),
        )
        trainer.train(resume_from_checkpoint=trl_run.resume_checkpoint(spec, output_dir))
        history = trl_run.log_history(trainer, "reward")
        rewards = [h["reward"] for h in history]
        window = max(1, len(rewards) // 4)
        metrics = {
            "reward_first": sum(rewards[:window]) / window if rewards else 0.0,
            "reward_last": sum(rewards[-window:]) / window if rewards else 0.0,
            "loss_last": history[-1].get("loss", 0.0) if history else 0.0,
            "train_rows": float(len(rows)),
        }
        return trl_run.finish(
            spec, trainer, tokenizer, Path(tmp), metrics, history, started, stopper.stop_reason
        )
