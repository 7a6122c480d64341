"""Models a user would bring, made on the spot: small Hugging Face folders with real chat templates.

A tokenizer trained on a few sentences and a randomly initialised Qwen2/Llama of a few hundred
thousand parameters; what matters to the import is the folder's shape, its config and its template.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHATML_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "What is the weather in Paris tomorrow?",
    '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>',
    "Book a table for two at eight.",
    "You are a helpful assistant with tools.",
] * 20


def chatml_template() -> str:
    """A plain ChatML template without tool support (as SmolLM2-135M-Instruct ships)."""
    return (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
        "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
        "{% endif %}"
    )


def make_user_model(
    folder: Path,
    *,
    chat_template: str | None = None,
    architecture: str = "Qwen2ForCausalLM",
    eos_token: str = "<|im_end|>",
    config_overrides: dict[str, Any] | None = None,
    with_weights: bool = True,
) -> Path:
    """Write a Hugging Face model folder (config, tokenizer, safetensors) to ``folder``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(
        CORPUS,
        trainer=trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=CHATML_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token=eos_token, pad_token=None)
    tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        bos_token_id=None,
    )
    if with_weights:
        Qwen2ForCausalLM(config).save_pretrained(folder)
    else:
        config.save_pretrained(folder)
    document = json.loads((folder / "config.json").read_text())
    document["architectures"] = [architecture]
    document.update(config_overrides or {})
    (folder / "config.json").write_text(json.dumps(document, indent=2))
    return folder
