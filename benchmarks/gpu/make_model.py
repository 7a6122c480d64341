"""GPU host: build the benchmark's base model from the carried config and tokenizer (random init, bf16),
optionally warm-started with a short supervised pass on the train split's reference answers.

python3 benchmarks/gpu/make_model.py --tokenizer .bundle/bench/tokenizer --out /tmp/bench/models/base \
    [--sft-data .bundle/bench/ds/train.parquet --sft-steps 150]

Why a warm start: a random model scores 0 on every prompt, so GRPO has no signal and the evaluation
compares zeros. The day-0 production model of the product is warm-started the same way (the CPU
engine's bootstrap); here it is a plain PyTorch loop because TRL is not in the offline bundle.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch
from continuous_learning_trainer.rewards import format_reference
from transformers import AutoTokenizer, PreTrainedTokenizerBase, Qwen2Config, Qwen2ForCausalLM


def sft_examples(path: Path, tok: PreTrainedTokenizerBase, max_len: int) -> list[tuple[list[int], int]]:
    """(token ids, prompt length): the prompt as the chat template renders it for VeRL/SGLang, then
    the reference answer in the reward's format, then the end-of-turn token."""
    out = []
    for row in pq.read_table(path).to_pylist():
        messages = [{k: v for k, v in m.items() if v is not None} for m in row["prompt"]]
        tools = json.loads(row["extra_info"]["tools_json"] or "null")
        prompt = tok.apply_chat_template(
            messages, tools=tools, add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        answer = tok(
            format_reference(json.loads(row["reward_model"]["ground_truth"])), add_special_tokens=False
        )
        ids = (list(prompt) + list(answer["input_ids"]) + [tok.eos_token_id])[:max_len]
        out.append((ids, len(prompt)))
    return out


def warm_start(model: Any, examples: list[tuple[list[int], int]], steps: int, batch: int, lr: float,
               pad: int, device: str, seed: int) -> list[float]:  # fmt: skip
    """AdamW on the answer tokens only (prompt and padding masked), fp32 master weights, bf16 autocast."""
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    warmup = max(steps // 10, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * s / steps)))
    )
    losses = []
    model.train()
    for step in range(steps):
        chosen = rng.sample(examples, min(batch, len(examples)))
        width = max(len(ids) for ids, _ in chosen)
        inputs = torch.full((len(chosen), width), pad, dtype=torch.long)
        labels = torch.full((len(chosen), width), -100, dtype=torch.long)
        mask = torch.zeros((len(chosen), width), dtype=torch.long)
        for i, (ids, prompt_len) in enumerate(chosen):
            inputs[i, : len(ids)] = torch.tensor(ids)
            labels[i, prompt_len : len(ids)] = torch.tensor(ids[prompt_len:])
            mask[i, : len(ids)] = 1
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = model(
                input_ids=inputs.to(device), attention_mask=mask.to(device), labels=labels.to(device)
            ).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if step % 25 == 0 or step == steps - 1:
            print(f"sft step {step + 1}/{steps} loss {losses[-1]:.3f}", flush=True)
    model.eval()
    return losses


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sft-data", help="train.parquet of the dataset builder (VeRL format)")
    ap.add_argument("--sft-steps", type=int, default=0)
    ap.add_argument("--sft-batch", type=int, default=16)
    ap.add_argument("--sft-lr", type=float, default=3e-4)
    ap.add_argument("--config-overrides", default="{}", help="JSON merged into the model config (tests)")
    args = ap.parse_args()
    src, out = Path(args.tokenizer), Path(args.out)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = json.loads((src / "model_config.json").read_text()) | json.loads(args.config_overrides)
    for key in ("architectures", "model_type", "torch_dtype"):
        cfg.pop(key, None)
    torch.manual_seed(args.seed)
    config = Qwen2Config(**cfg)
    tok = AutoTokenizer.from_pretrained(src)
    with torch.device(device):
        model = Qwen2ForCausalLM(config)
    report: dict[str, Any] = {"sft_steps": 0}
    if args.sft_steps > 0 and args.sft_data:
        started = time.monotonic()
        examples = sft_examples(Path(args.sft_data), tok, max_len=1024)
        losses = warm_start(model, examples, args.sft_steps, args.sft_batch, args.sft_lr,
                            tok.pad_token_id, device, args.seed)  # fmt: skip
        report = {
            "sft_steps": args.sft_steps,
            "sft_examples": len(examples),
            "sft_loss_first": round(losses[0], 4),
            "sft_loss_last10": round(sum(losses[-10:]) / len(losses[-10:]), 4),
            "sft_seconds": round(time.monotonic() - started, 1),
        }
    model = model.to(torch.bfloat16)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    shutil.copy(src / "chat_template.jinja", out / "chat_template.jinja")
    params = sum(p.numel() for p in model.parameters())
    print(
        json.dumps(
            {"parameters": params, "vocab": config.vocab_size, "dtype": "bfloat16", "out": str(out)} | report
        )
    )


if __name__ == "__main__":
    main()
