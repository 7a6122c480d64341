"""Prompts and completions of Hugging Face models on the CPU: shared by the CPU engine's GRPO and SFT
runs and by evaluation, so a model is trained and evaluated on the same text.

Prompts are rendered in the model's own chat template (:func:`render`, as VeRL renders them); the
tiny models without one get the project's text format (:mod:`continuous_learning_trainer.chat`).
Completions stop and are cut at the model's eos (:func:`decode_completion`).
"""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow.parquet as pq
from continuous_learning import storage

from continuous_learning_trainer import chat
from continuous_learning_trainer.chat import END


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
