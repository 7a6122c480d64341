"""GPU host: build the benchmark's base model from the carried config and tokenizer (random init, bf16).

python3 benchmarks/gpu/make_model.py --tokenizer .bundle/bench/tokenizer --out /tmp/bench/models/base
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    src, out = Path(args.tokenizer), Path(args.out)
    cfg = json.loads((src / "model_config.json").read_text())
    cfg.pop("architectures", None)
    cfg.pop("model_type", None)
    cfg.pop("torch_dtype", None)
    torch.manual_seed(args.seed)
    config = Qwen2Config(**cfg)
    with torch.device("cuda"):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)
    tok = AutoTokenizer.from_pretrained(src)
    tok.save_pretrained(out)
    shutil.copy(src / "chat_template.jinja", out / "chat_template.jinja")
    params = sum(p.numel() for p in model.parameters())
    print(
        json.dumps({"parameters": params, "vocab": config.vocab_size, "dtype": "bfloat16", "out": str(out)})
    )


if __name__ == "__main__":
    main()
