"""Supervised fine-tuning with TRL's SFTTrainer on CPU: the ``sft`` candidate and the imitation warm start.

- :func:`train_sft` (``RunSpec.algorithm == "sft"``): a candidate trained on the train split's references
  (corrections and positively rated answers), written like a GRPO run's (``model/``, ``adapter/`` with
  LoRA, ``checkpoints/``, ``result.json``) and gated like any other candidate.
- :func:`imitate_agent`: fine-tunes a model folder in place on the agent's own logged answers, mistakes
  included, so a pretrained model that did not write the logs plays the agent that did.

Prompts are rendered as in RL (:func:`continuous_learning_trainer.prompts.render`); a completion is
the answer written the way the model writes it: its tool calls in the run's tool-call format (or its
text), inside the template's assistant turn, end-of-turn token included.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from continuous_learning.contracts import ImitationOptions, RunSpec, ToolCallFormat, TrainResult

from continuous_learning_trainer import prompts, reward_function, trl_run
from continuous_learning_trainer.evaluate import generate_greedy
from continuous_learning_trainer.stopping import StopRequest

log = logging.getLogger(__name__)

#: Reference sources an SFT candidate learns from (every row of the reward dataset has one of them).
SFT_SOURCES = ("correction", "positive_feedback")
#: Greedy samples scored before and after an SFT run (``reward_first`` / ``reward_last``).
REWARD_SAMPLES = 4
_PROBE = "CL_ANSWER_PROBE_7f3a"


def answer_text(answer: dict[str, Any], tool_call_format: str) -> str:
    """An answer ``{"content", "tool_calls"}`` as the model writes it: its calls in ``tool_call_format``,
    else its text."""
    from continuous_learning.models.tool_calls import format_calls

    calls = answer.get("tool_calls") or []
    return (
        format_calls(calls, cast(ToolCallFormat, tool_call_format))
        if calls
        else (answer.get("content") or "")
    )


def assistant_turn(tokenizer: Any) -> tuple[str, str]:
    """The text the chat template writes before and after an assistant message's content, once the
    generation prompt is written (``("", "")`` for a model without a template: TRL appends eos).

    Found by rendering a probe conversation with and without an assistant reply and taking the text
    after the prompt, so the end-of-turn token (ChatML's ``<|im_end|>``) is part of every completion;
    it is cut after the eos token so TRL does not append a second one.
    """
    if not prompts.has_chat_template(tokenizer):
        return "", ""
    probe = [{"role": "user", "content": "Hello"}]
    prompt = str(tokenizer.apply_chat_template(probe, add_generation_prompt=True, tokenize=False))
    full = str(
        tokenizer.apply_chat_template([*probe, {"role": "assistant", "content": _PROBE}], tokenize=False)
    )
    eos = tokenizer.eos_token or ""
    if not full.startswith(prompt) or _PROBE not in full[len(prompt) :]:
        log.warning("the chat template's assistant turn does not follow its prompt: completions end in eos")
        return "", eos
    before, after = full[len(prompt) :].split(_PROBE, 1)
    if eos and eos in after:
        after = after[: after.index(eos) + len(eos)]
    return before, after


def sft_examples(
    tokenizer: Any,
    rows: list[dict[str, Any]],
    answers: list[dict[str, Any]],
    tool_call_format: str,
) -> list[dict[str, str]]:
    """TRL prompt-completion examples: each row's prompt (the template's text, BOS included: TRL
    tokenizes it without special tokens) and ``answers``' text in the template's assistant turn."""
    before, after = assistant_turn(tokenizer)
    return [
        {
            "prompt": prompts.render(tokenizer, r["messages"], r["tools"], add_special_tokens=False),
            "completion": before + answer_text(answer, tool_call_format) + after,
        }
        for r, answer in zip(rows, answers, strict=True)
    ]


def logged_answer(reference: dict[str, Any], reference_source: str) -> dict[str, Any]:
    """What the agent answered in the log: for a correction, the answer the user corrected (the first
    negative); otherwise (positive feedback) the agent's answer is the reference itself."""
    negatives = reference.get("negatives") or []
    if reference_source == "correction" and negatives:
        return dict(negatives[0])
    return {"content": reference.get("content"), "tool_calls": reference.get("tool_calls") or []}


def _sft_config(output_dir: Path, **overrides: Any) -> Any:
    import torch
    from trl import SFTConfig

    # A GPU where the job has one (an import-model job on a GPU worker), else the CPU in fp32.
    gpu = torch.cuda.is_available()
    settings: dict[str, Any] = {
        "output_dir": str(output_dir),
        "use_cpu": not gpu,
        "bf16": gpu,
        "gradient_checkpointing": False,  # small models: memory is not the bottleneck
        "logging_steps": 1,
        "report_to": "none",
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        "lr_scheduler_type": "constant",
        "save_strategy": "no",
    }
    return SFTConfig(**(settings | overrides))


def sample_reward(spec: RunSpec, model: Any, tokenizer: Any, rows: list[dict[str, Any]]) -> float:
    """Mean reward (the run's reward) of greedy completions of ``rows``' prompts."""
    texts = [prompts.render(tokenizer, r["messages"], r["tools"]) for r in rows]
    responses = generate_greedy(model, tokenizer, texts, spec.hyperparameters.max_completion_tokens)
    scores = [
        reward_function.score(
            response,
            json.loads(r["ground_truth"]),
            r["tools"],
            reward=spec.reward,
            weights=spec.reward_weights,
            tool_call_format=spec.tool_call_format,
        )
        for r, response in zip(rows, responses, strict=True)
    ]
    return sum(scores) / len(scores)


def train_sft(spec: RunSpec, stop: StopRequest | None = None) -> TrainResult:
    """An SFT candidate: the base model fine-tuned on the train split's references.

    Metrics: ``loss_first``/``loss_last`` (training loss of the first and last logged step, on the
    completion tokens), ``train_rows`` (rows trained on), and ``reward_first``/``reward_last``: the mean
    reward of greedy completions of the first ``reward_samples`` training prompts (in training order)
    before and after training, scored by the run's reward.
    """
    import torch
    from datasets import Dataset
    from trl import SFTTrainer

    started = datetime.now(UTC)
    stop = stop or StopRequest(spec.hyperparameters.max_seconds)
    torch.set_num_threads(spec.resources.cpu_threads)
    hp = spec.hyperparameters
    rows = [r for r in prompts.load_rows(spec.dataset.train_uri) if r["reference_source"] in SFT_SOURCES]
    if not rows:
        raise ValueError(f"no rows with a correction or positive feedback in {spec.dataset.train_uri}")
    if spec.reward.function:
        reward_function.load_reward(spec.reward)
    random.Random(hp.seed).shuffle(rows)
    probe = rows[: min(REWARD_SAMPLES, len(rows))]
    with tempfile.TemporaryDirectory(prefix="cl-sft-") as tmp:
        model, tokenizer = trl_run.load_base(spec, Path(tmp))
        references = [json.loads(r["ground_truth"]) for r in rows]
        examples = sft_examples(tokenizer, rows, references, spec.tool_call_format)
        reward_first = sample_reward(spec, model, tokenizer, probe)
        output_dir = Path(tmp) / "run"
        config = _sft_config(
            output_dir,
            max_steps=hp.max_steps,
            learning_rate=hp.learning_rate,
            per_device_train_batch_size=hp.prompts_per_step,
            seed=hp.seed,
            max_length=spec.verl.max_prompt_length + hp.max_completion_tokens,
            save_strategy="steps",
            save_steps=hp.checkpoint_every,
            save_total_limit=2,
            report_to=trl_run.report_to(spec),
        )
        stopper = trl_run.stop_callback(stop, hp.checkpoint_every_seconds)
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=Dataset.from_list(examples),
            processing_class=tokenizer,
            callbacks=[trl_run.checkpoint_uploader(output_dir, spec.output_uri), stopper],
            peft_config=trl_run.lora_config(spec.lora),
        )
        trainer.train(resume_from_checkpoint=trl_run.resume_checkpoint(spec, output_dir))
        history = trl_run.log_history(trainer, "loss")
        reward_last = sample_reward(spec, trainer.model, tokenizer, probe)
        losses = [h["loss"] for h in history]
        metrics = {
            "loss_first": losses[0] if losses else 0.0,
            "loss_last": losses[-1] if losses else 0.0,
            "train_rows": float(len(rows)),
            "reward_first": reward_first,
            "reward_last": reward_last,
            "reward_samples": float(len(probe)),
        }
        return trl_run.finish(
            spec, trainer, tokenizer, Path(tmp), metrics, history, started, stopper.stop_reason
        )


def imitation_examples(
    tokenizer: Any, rows: list[dict[str, Any]], tool_call_format: str
) -> list[dict[str, str]]:
    """Prompt-completion examples of the agent's logged answers (:func:`logged_answer`); rows whose
    logged answer is empty are left out."""
    answers = [logged_answer(json.loads(r["ground_truth"]), r["reference_source"]) for r in rows]
    kept = [(r, a) for r, a in zip(rows, answers, strict=True) if a.get("tool_calls") or a.get("content")]
    return sft_examples(tokenizer, [r for r, _ in kept], [a for _, a in kept], tool_call_format)


#: Weight files a save replaces (a sharded checkpoint saved whole must not leave its old shards).
_WEIGHT_PATTERNS = (
    "*.safetensors",
    "*.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model*.index.json",
)


def imitate_agent(
    model_dir: Path, options: ImitationOptions, tool_call_format: str, threads: int
) -> dict[str, float]:
    """Fine-tune the model in ``model_dir`` in place (weights in their original dtype, tokenizer too) on
    the agent's own logged answers in ``options.dataset.train_uri``.

    Returns ``rows`` (examples trained on), ``corrected_rows`` (of them, answers a user corrected),
    ``steps``, ``loss_first``, ``loss_last`` and ``seconds``.
    """
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    started = time.monotonic()
    torch.set_num_threads(threads)
    rows = prompts.load_rows(options.dataset.train_uri)
    tokenizer = prompts.prepare_tokenizer(AutoTokenizer.from_pretrained(model_dir))
    examples = imitation_examples(tokenizer, rows, tool_call_format)
    if not examples:
        raise ValueError(f"no logged answers in {options.dataset.train_uri}: nothing to imitate")
    corrected = sum(
        1
        for r in rows
        if r["reference_source"] == "correction" and json.loads(r["ground_truth"]).get("negatives")
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto")
    stored_dtype = model.dtype
    model = model.float()
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    with tempfile.TemporaryDirectory(prefix="cl-imitate-") as tmp:
        config = _sft_config(
            Path(tmp) / "run",
            max_steps=options.steps,
            learning_rate=options.learning_rate,
            per_device_train_batch_size=min(8, len(examples)),
            seed=options.seed,
            max_length=2048,
        )
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=Dataset.from_list(examples).shuffle(seed=options.seed),
            processing_class=tokenizer,
        )
        trainer.train()
        losses = [h["loss"] for h in trl_run.log_history(trainer, "loss")]
        saved = Path(tmp) / "saved"
        trained: Any = trainer.model
        trained.to(stored_dtype).save_pretrained(saved)
        tokenizer.save_pretrained(saved)
        for pattern in _WEIGHT_PATTERNS:
            for old in model_dir.glob(pattern):
                old.unlink()
        for file in saved.iterdir():
            shutil.copy2(file, model_dir / file.name)
    metrics = {
        "rows": float(len(examples)),
        "corrected_rows": float(corrected),
        "steps": float(trainer.state.global_step),
        "loss_first": losses[0] if losses else 0.0,
        "loss_last": losses[-1] if losses else 0.0,
        "seconds": time.monotonic() - started,
    }
    log.info("imitation warm start of %s: %s", model_dir, metrics)
    return metrics
