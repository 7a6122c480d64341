"""CPU side of the GPU benchmark: the dataset (from the project's builder), a tokenizer trained on its
corpus with a chat template, and a Qwen2 config. Everything lands in ``.bundle/bench`` (ignored, carried).

    .venv/bin/python benchmarks/gpu/prepare.py --dataset /tmp/cl/data/datasets/<id>

The weights are never carried: ``make_model.py`` builds them on the GPU host from this config (random
init, bf16), because nothing can be downloaded there.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
from continuous_learning_trainer.tiny_model import train_tokenizer

ROOT = Path(__file__).resolve().parents[2]

# The project's chat format (continuous_learning_trainer.chat.render_prompt) as a Jinja chat template,
# so VeRL (tokenizer.apply_chat_template) and SGLang render prompts the way the CPU engine does; the
# tool schemas go into a leading system line, as real templates do.
CHAT_TEMPLATE = (
    "{%- if tools %}<|system|>tools: {{ tools | tojson }}{{ '\\n' }}{% endif -%}"
    "{%- for m in messages -%}"
    "{{ '<|' + m['role'] + '|>' }}{{ m['content'] or '' }}"
    "{%- for c in (m['tool_calls'] or []) -%}"
    '<tool_call>{"name":"{{ c["function"]["name"] }}","arguments":{{ c["function"]["arguments"] }}}</tool_call>'
    "{%- endfor %}{{ '\\n' }}"
    "{% endfor -%}"
    "{%- if add_generation_prompt %}<|assistant|>{% endif -%}"
)

#: Qwen2-0.5B's body (hidden 896, 24 layers, 14 query / 2 KV heads, MLP 4864) with the corpus's own
#: small vocabulary: about 0.36B parameters.
MODEL = {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "heads": 14, "kv_heads": 2}


def corpus(rows: list[dict]) -> list[str]:
    out = []
    for row in rows:
        for m in row["prompt"]:
            out.append(m.get("content") or "")
            for c in m.get("tool_calls") or []:
                out.append(c["function"]["name"] + " " + c["function"]["arguments"])
        out.append(row["reward_model"]["ground_truth"])
        out.append(row["extra_info"].get("tools_json") or "")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True, help="folder with train/validation/test.parquet")
    ap.add_argument("--out", default=str(ROOT / ".bundle" / "bench"))
    ap.add_argument("--vocab", type=int, default=2048)
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    (out / "ds").mkdir(parents=True)
    for name in ("train", "validation", "test", "manifest"):
        for src in Path(args.dataset).glob(f"{name}.*"):
            shutil.copy(src, out / "ds" / src.name)
    rows = pq.read_table(out / "ds" / "train.parquet").to_pylist()
    tok = train_tokenizer(corpus(rows), vocab_size=args.vocab)
    tok.chat_template = CHAT_TEMPLATE
    tok.model_max_length = 4096
    tok.save_pretrained(out / "tokenizer")
    lengths = sorted(
        len(
            tok.apply_chat_template(
                [{k: v for k, v in m.items() if v is not None} for m in r["prompt"]],
                tools=json.loads(r["extra_info"]["tools_json"] or "null"),
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
            )["input_ids"]
        )
        for r in rows
    )
    config = {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": len(tok),
        "hidden_size": MODEL["hidden_size"],
        "intermediate_size": MODEL["intermediate_size"],
        "num_hidden_layers": MODEL["num_hidden_layers"],
        "num_attention_heads": MODEL["heads"],
        "num_key_value_heads": MODEL["kv_heads"],
        "max_position_embeddings": 4096,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6,
        "hidden_act": "silu",
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
        "bos_token_id": None,
    }
    (out / "tokenizer" / "model_config.json").write_text(json.dumps(config, indent=2))
    stats = {
        "rows": len(rows),
        "vocab": len(tok),
        "prompt_tokens_max": lengths[-1],
        "prompt_tokens_p50": lengths[len(lengths) // 2],
    }
    (out / "prepare.json").write_text(json.dumps(stats))
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
