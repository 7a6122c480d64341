"""CPU engine: TRL's SFTTrainer for the day-0 warm start, TRL's GRPOTrainer for RL updates.

It takes the same RunSpec as the VeRL engine and writes the same layout under ``output_uri``:
``model/`` (a Hugging Face checkpoint; with LoRA the merged model, and ``adapter/`` beside it),
``checkpoints/`` (resumable), ``result.json``. ``algorithm: sft`` runs :mod:`continuous_learning_trainer.sft`.

Prompts are rendered in the model's own chat template (:func:`render`); completions stop and are cut
at the model's eos (:func:`decode_completion`); the reward is the run's
(:mod:`continuous_learning_trainer.reward_function`). Slightly over 400 lines: the prompt, decoding and
output helpers here are shared by the GRPO run, the SFT module and evaluation, and read best together.
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
from continuous_learning.contracts import (
    BootstrapSpec,
    LoraOptions,
    RewardFunction,
    RewardWeights,
    RunSpec,
    TrainResult,
)

from continuous_learning_trainer import chat, reward_function
from continuous_learning_trainer.chat import END
from continuous_learning_trainer.rewards import format_reference

log = logging.getLogger(__name__)


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def prepare_tokenizer(tokenizer: Any) -> Any:
    """A real model's tokenizer may have no pad token: pad with eos (what TRL and SGLang expect)."""
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def render(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    *,
    add_special_tokens: bool = True,
) -> str:
    """The prompt text of a conversation, ending where the assistant's turn starts.

    A model with a chat template gets it rendered by the template, tools included
    (:func:`continuous_learning.models.chat_templates.render_prompt`, as VeRL renders it); the CPU
    engine's tiny models (no template) get the project's text format. ``add_special_tokens``: the text
    will be tokenized with special tokens (GRPO, generation), so a BOS the template writes and the
    tokenizer adds again is left out of the text; SFT tokenizes without them and keeps it.
    """
    if tokenizer is None or not has_chat_template(tokenizer):
        return chat.render_prompt(messages)
    from continuous_learning.models import chat_templates

    text = chat_templates.render_prompt(tokenizer, messages, tools)
    bos = tokenizer.bos_token
    if (
        add_special_tokens
        and bos
        and text.startswith(bos)
        and tokenizer("x")["input_ids"][:1] == [tokenizer.bos_token_id]
    ):
        text = text[len(bos) :]
    return text


def load_rows(uri: str) -> list[dict[str, Any]]:
    """VeRL-format rows as chat messages, tools and the reference (JSON text), in file order."""
    table = pq.read_table(io.BytesIO(storage.read_bytes(uri)))
    rows = []
    for row in table.to_pylist():
        extra = row["extra_info"] or {}
        tools_json = extra.get("tools_json") or ""
        rows.append(
            {
                "messages": [{k: v for k, v in m.items() if v is not None} for m in row["prompt"]],
                "tools": json.loads(tools_json) if tools_json else None,
                "ground_truth": row["reward_model"]["ground_truth"],
                "tools_json": tools_json,
                "interaction_id": extra.get("interaction_id") or "",
                "agent": extra.get("agent") or "",
                "ability": row["ability"],
                "reference_source": extra.get("reference_source") or "",
            }
        )
    return rows


def prompt_rows(rows: list[dict[str, Any]], tokenizer: Any = None) -> list[dict[str, Any]]:
    """Rows with the prompt rendered for ``tokenizer``'s model (see :func:`render`), without the
    message structures (the trainers' datasets take flat columns)."""
    return [
        {"prompt": render(tokenizer, r["messages"], r["tools"])}
        | {k: v for k, v in r.items() if k not in ("messages", "tools")}
        for r in rows
    ]


def load_prompts(uri: str, tokenizer: Any = None) -> list[dict[str, Any]]:
    """VeRL-format rows, with the prompt rendered as text for the model and the reference kept as JSON."""
    return prompt_rows(load_rows(uri), tokenizer)


def stop_token_ids(tokenizer: Any, generation_config: Any = None) -> list[int]:
    """Where a completion ends: the tokenizer's eos, and the model's other eos tokens (end of turn)."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    extra = getattr(generation_config, "eos_token_id", None)
    for token in [extra] if isinstance(extra, int) else (extra or []):
        if token not in ids:
            ids.append(token)
    return ids


def decode_completion(tokenizer: Any, ids: Any, stop_ids: list[int]) -> str:
    """A completion's text, cut at its first stop token, padding dropped, special tokens kept
    (a format such as Mistral's ``[TOOL_CALLS]`` is one)."""
    ids = [int(i) for i in ids]
    stops = set(stop_ids)
    end = next((n for n, token in enumerate(ids) if token in stops), len(ids))
    kept = [i for i in ids[:end] if i != tokenizer.pad_token_id]
    text: str = tokenizer.decode(kept, skip_special_tokens=False)
    return text.split(END, 1)[0]


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


def train(spec: RunSpec) -> TrainResult:
    """A candidate from the base model on the spec's train split: GRPO updates (TRL), or SFT on the
    references (``algorithm: sft``, :mod:`continuous_learning_trainer.sft`); full fine-tuning or LoRA.
    Writes ``model/`` (and ``adapter/`` with LoRA), ``checkpoints/`` and ``result.json``."""
    if spec.algorithm == "sft":
        from continuous_learning_trainer.sft import train_sft

        return train_sft(spec)
    if spec.algorithm != "grpo":
        log.warning("the CPU engine has no %s: running GRPO (use engine verl for PPO)", spec.algorithm)
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    started = datetime.now(UTC)
    torch.set_num_threads(spec.resources.cpu_threads)
    hp = spec.hyperparameters
    raw = load_rows(spec.dataset.train_uri)
    if not raw:
        raise ValueError(f"no training rows in {spec.dataset.train_uri}")
    if spec.reward.function:
        reward_function.load_reward(spec.reward)  # a bad name fails here, before any model is loaded
    with tempfile.TemporaryDirectory(prefix="cl-train-") as tmp:
        model, tokenizer = load_base(spec, Path(tmp))
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
            report_to="none",
            seed=hp.seed,
            dataloader_num_workers=0,
            disable_tqdm=True,
            lr_scheduler_type="constant",
        )
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
            callbacks=[checkpoint_uploader(output_dir, spec.output_uri)],
            peft_config=lora_config(spec.lora),
        )
        trainer.train(resume_from_checkpoint=resume_checkpoint(spec, output_dir))
        history = [
            {k: float(v) for k, v in entry.items() if isinstance(v, (int, float))}
            for entry in trainer.state.log_history
            if "reward" in entry
        ]
        model_uri, adapter_uri = save_trained(trainer.model, tokenizer, spec.output_uri, Path(tmp))
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
        adapter_uri=adapter_uri,
        steps=int(trainer.state.global_step),
        metrics=metrics,
        history=history,
        versions=versions(),
        started_at=started,
    )
    result.write(storage.join(spec.output_uri, "result.json"))
    return result
