"""A VeRL checkpoint as a servable artifact: VeRL's model merger to Hugging Face format, a LoRA
adapter merged into the base weights with peft, and the checks that the result serves."""

from __future__ import annotations

import logging
import math
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from continuous_learning import storage
from continuous_learning.contracts import RunSpec

from continuous_learning_trainer.verl_engine.launch import CommandRunner
from continuous_learning_trainer.verl_engine.layout import Layout

log = logging.getLogger(__name__)

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
)


def merge_command(local_dir: Path, target_dir: Path) -> list[str]:
    """VeRL's merger of one FSDP checkpoint (``global_step_N/actor`` of main_ppo, ``global_step_N`` of
    the SFT trainer) into a Hugging Face folder."""
    return [
        sys.executable,
        "-m",
        "verl.model_merger",
        "merge",
        "--backend",
        "fsdp",
        "--local_dir",
        str(local_dir),
        "--target_dir",
        str(target_dir),
    ]


#: Where VeRL's merger puts a LoRA checkpoint's adapter (verl/model_merger/base_model_merger.py,
#: ``save_lora_adapter``): ``adapter_config.json`` + ``adapter_model.safetensors``, peft's layout.
VERL_ADAPTER_DIR = "lora_adapter"


def merge_lora_adapter(verl_merged: Path, target: Path) -> Path:
    """The servable model of a LoRA run, in ``target``; returns the adapter's folder.

    VeRL's merger does not merge a LoRA checkpoint: it moves the ``lora_A``/``lora_B`` tensors to
    ``lora_adapter/`` (rank and alpha from ``lora_train_meta.json``, target modules from the tensor
    names) and saves the *base* weights (``base_layer`` renamed back) as the model. Serving that folder
    would serve the base model, so the adapter is merged into it here with peft (``merge_and_unload``).
    """
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM

    adapter = verl_merged / VERL_ADAPTER_DIR
    if not (adapter / "adapter_config.json").is_file():
        raise RuntimeError(f"a LoRA run, but VeRL's merger wrote no adapter in {adapter}")
    saved = getattr(AutoConfig.from_pretrained(verl_merged), "dtype", None)
    saved = getattr(torch, saved) if isinstance(saved, str) else saved
    # merged in fp32 (B @ A added to the weights without bf16 rounding), saved in the merger's dtype
    base = AutoModelForCausalLM.from_pretrained(verl_merged, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    if isinstance(saved, torch.dtype) and saved != torch.float32:
        merged = merged.to(saved)
    if target.exists():
        shutil.rmtree(target)
    merged.save_pretrained(target)
    for name in TOKENIZER_FILES:
        if (verl_merged / name).exists():
            shutil.copy2(verl_merged / name, target / name)
    log.info("LoRA adapter %s merged into the base weights: %s", adapter, target)
    return adapter


def validate_hf_model(model_dir: Path, base_model: Path | None = None) -> dict[str, float]:
    """A merged model is usable when transformers reads its config, tokenizer files are there (copied
    from the base model when the merge left them out) and every safetensors file opens with plain
    weights (no peft ``lora_``/``base_layer`` tensors: an unmerged adapter does not serve)."""
    from safetensors import safe_open
    from transformers import AutoConfig

    if base_model is not None:
        for name in TOKENIZER_FILES:
            if not (model_dir / name).exists() and (base_model / name).exists():
                shutil.copy2(base_model / name, model_dir / name)
    AutoConfig.from_pretrained(model_dir)
    if not (model_dir / "tokenizer_config.json").exists() or not any(
        (model_dir / n).exists() for n in ("tokenizer.json", "vocab.json", "tokenizer.model")
    ):
        raise ValueError(f"{model_dir} has no tokenizer files")
    shards = sorted(model_dir.glob("*.safetensors"))
    if not shards:
        raise ValueError(f"{model_dir} has no safetensors weights")
    tensors = parameters = 0
    for shard in shards:
        with safe_open(str(shard), framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118 - safe_open is not a mapping
                if ".lora_" in key or ".base_layer." in key:
                    raise ValueError(f"{shard.name} holds the unmerged LoRA tensor {key}")
                tensors += 1
                parameters += math.prod(fh.get_slice(key).get_shape())
    return {"model_tensors": float(tensors), "model_parameters": float(parameters)}


def publish_checkpoint(
    spec: RunSpec, layout: Layout, step: int, runner: CommandRunner, env: Mapping[str, str]
) -> tuple[str, str | None, dict[str, float]]:
    """Merge checkpoint ``global_step_<step>`` (LoRA: the adapter into the base weights too), validate
    it and upload it to ``<output_uri>/model`` (and ``adapter/``): (model URI, adapter URI, metrics)."""
    if layout.merged.exists():
        shutil.rmtree(layout.merged)
    step_dir = layout.checkpoints / f"global_step_{step}"
    sharded = step_dir if spec.algorithm == "sft" else step_dir / "actor"
    runner(merge_command(sharded, layout.merged), env, None)
    model_dir, adapter_dir = layout.merged, None
    if spec.lora.enabled:
        adapter_dir = merge_lora_adapter(layout.merged, layout.lora_merged)
        model_dir = layout.lora_merged
    model_metrics = validate_hf_model(model_dir, layout.base_model)
    model_uri = storage.join(spec.output_uri, "model")
    storage.store_for(model_uri).delete_prefix(model_uri + "/")
    storage.upload_dir(model_dir, model_uri)
    adapter_uri = None
    if adapter_dir is not None:
        adapter_uri = storage.join(spec.output_uri, "adapter")
        storage.store_for(adapter_uri).delete_prefix(adapter_uri + "/")
        storage.upload_dir(adapter_dir, adapter_uri)
    return model_uri, adapter_uri, model_metrics
