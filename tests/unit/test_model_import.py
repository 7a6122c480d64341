"""Onboarding the user's model: what is checked, what is fixed, what is refused, and the lineage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from continuous_learning import storage
from continuous_learning.config import load_settings
from continuous_learning.contracts import ImportSpec
from continuous_learning.models.chat_templates import load_shipped
from continuous_learning.models.importing import ModelImportError, prepare_model, publish_model
from continuous_learning.models.onboarding import OnboardingError
from continuous_learning.registry import ModelRegistry

from tests.user_models import chatml_template, make_user_model


def _spec(source: Path | str, out: Path, **fields: object) -> ImportSpec:
    return ImportSpec(run_id="r1", source_uri=str(source), output_uri=f"file://{out}/model", **fields)  # type: ignore[arg-type]


def test_a_hermes_model_imports_with_lineage(tmp_path: Path) -> None:
    source = make_user_model(tmp_path / "src", chat_template=load_shipped("hermes"))
    prepared = prepare_model(_spec(source, tmp_path / "store"), tmp_path / "work")
    assert prepared.architecture == "Qwen2ForCausalLM"
    assert prepared.chat_template_source == "model"
    assert prepared.tool_call_format == "hermes"
    result = publish_model(prepared, _spec(source, tmp_path / "store"))
    lineage = result.lineage
    assert lineage.parameters > 10_000
    assert lineage.dtype == "float32"
    assert "model.safetensors" in lineage.files and len(lineage.files["model.safetensors"]) == 64
    assert "config.json" in lineage.files and "tokenizer.json" in lineage.files
    assert len(lineage.chat_template_sha256) == 64
    # the tokenizer had no pad token: pad = eos, and the fix is recorded
    assert any("pad" in fix for fix in lineage.fixes)
    stored = Path(result.model_uri.removeprefix("file://"))
    assert (stored / "model.safetensors").is_file()
    tokenizer_config = json.loads((stored / "tokenizer_config.json").read_text())
    assert tokenizer_config["pad_token"] == "<|im_end|>"
    # the import document sits beside the model
    assert storage.exists(f"file://{tmp_path}/store/import.json")


def test_chatml_without_tools_gets_the_fallback_template(tmp_path: Path) -> None:
    source = make_user_model(tmp_path / "src", chat_template=chatml_template())
    prepared = prepare_model(_spec(source, tmp_path / "store"), tmp_path / "work")
    assert prepared.chat_template_source == "fallback"
    assert prepared.chat_template == load_shipped("chatml-tools")
    assert any("fallback" in fix or "chatml-tools" in fix for fix in prepared.fixes)


def test_eos_that_disagrees_with_the_config_is_fixed(tmp_path: Path) -> None:
    # as in the GGUF-derived SmolLM2 tokenizer: eos <|im_start|> while config.json says <|im_end|>
    source = make_user_model(tmp_path / "src", chat_template=load_shipped("hermes"), eos_token="<|im_start|>")
    prepared = prepare_model(_spec(source, tmp_path / "store"), tmp_path / "work")
    tokenizer_config = json.loads((prepared.folder / "tokenizer_config.json").read_text())
    assert tokenizer_config["eos_token"] == "<|im_end|>"
    assert any("'<|im_start|>' -> '<|im_end|>'" in fix for fix in prepared.fixes)
    generation = json.loads((prepared.folder / "generation_config.json").read_text())
    config = json.loads((prepared.folder / "config.json").read_text())
    assert generation["eos_token_id"] == config["eos_token_id"]


def test_eos_outside_the_vocabulary_is_refused(tmp_path: Path) -> None:
    source = make_user_model(
        tmp_path / "src", chat_template=load_shipped("hermes"), config_overrides={"eos_token_id": 99_999}
    )
    with pytest.raises(ModelImportError, match=r"eos_token_id 99999 is outside the tokenizer's vocabulary"):
        prepare_model(_spec(source, tmp_path / "store"), tmp_path / "work")


def test_missing_files_are_named(tmp_path: Path) -> None:
    source = make_user_model(tmp_path / "src", chat_template=load_shipped("hermes"), with_weights=False)
    with pytest.raises(ModelImportError, match=r"missing safetensors weights"):
        prepare_model(_spec(source, tmp_path / "store"), tmp_path / "work")
    (source / "tokenizer.json").unlink()
    (source / "config.json").unlink()
    with pytest.raises(ModelImportError, match=r"missing config\.json, a tokenizer file"):
        prepare_model(_spec(source, tmp_path / "store"), tmp_path / "work")
    with pytest.raises(ModelImportError, match=r"no such folder"):
        prepare_model(_spec(tmp_path / "nowhere", tmp_path / "store"), tmp_path / "work")


def test_an_architecture_the_rollout_engine_cannot_load_is_refused(tmp_path: Path) -> None:
    source = make_user_model(
        tmp_path / "src", chat_template=load_shipped("hermes"), architecture="BertForMaskedLM"
    )
    with pytest.raises(ModelImportError, match=r"architecture BertForMaskedLM is not one the rollout engine"):
        prepare_model(_spec(source, tmp_path / "store"), tmp_path / "work")


def test_no_chat_template_is_refused_unless_overridden(tmp_path: Path) -> None:
    source = make_user_model(tmp_path / "src", chat_template=None)
    # a ChatML vocabulary hints at the fallback; anything else needs the override
    prepared = prepare_model(_spec(source, tmp_path / "store"), tmp_path / "work")
    assert prepared.chat_template_source == "fallback"
    overridden = prepare_model(_spec(source, tmp_path / "store", chat_template="llama3"), tmp_path / "w2")
    assert overridden.chat_template_source == "override"
    assert overridden.tool_call_format == "llama3_json"


def test_a_template_that_cannot_render_tool_calls_is_refused(tmp_path: Path) -> None:
    # renders content only: an assistant tool call (content None) disappears
    broken = (
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] or '' }}\n{% endfor %}"
        "{% for t in tools or [] %}{{ t | tojson }}{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}"
    )
    source = make_user_model(tmp_path / "src", chat_template=broken)
    with pytest.raises(ModelImportError, match=r"model\.chat_template"):
        prepare_model(_spec(source, tmp_path / "store"), tmp_path / "work")


def test_hub_ids_need_a_reachable_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelImportError, match=r"hf://org/model: this machine is offline"):
        prepare_model(_spec("hf://org/model", tmp_path / "store"), tmp_path / "work")


def test_register_model_cli_onboards_and_promotes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from continuous_learning.cli import main

    root = f"file://{tmp_path / 'store'}"
    monkeypatch.setenv("CL_STORAGE__ROOT", root)
    source = make_user_model(
        tmp_path / "src", chat_template=load_shipped("mistral"), architecture="MistralForCausalLM"
    )
    assert (
        main(["register-model", "--uri", str(source), "--promote", "--reason", "onboarding our agent"]) == 0
    )
    document = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert document["version"] == "v0" and document["production_revision"] == 1
    assert document["lineage"]["tool_call_format"] == "mistral"
    registry = ModelRegistry(storage.join(root, "registry"))
    production = registry.alias("production")
    assert production is not None and production.version == "v0"
    assert production.reason == "onboarding our agent"
    version = registry.get("v0")
    assert version.lineage["kind"] == "import" and version.lineage["architecture"] == "MistralForCausalLM"
    assert storage.exists(storage.join(version.model_uri, "model.safetensors"))

    # a second model registered without --promote leaves production alone
    assert main(["register-model", "--uri", f"file://{source}"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["version"] == "v1"
    assert registry.alias("production").version == "v0"  # type: ignore[union-attr]

    with pytest.raises(SystemExit) as stop:
        main(["register-model", "--uri", str(tmp_path / "nowhere")])
    assert stop.value.code == 1
    assert "no such folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["register-model", "--uri", str(source), "--promote"])  # a promotion needs a reason


def test_prod_settings_never_build_a_model() -> None:
    from continuous_learning.config import ConfigError

    with pytest.raises(ConfigError, match=r"prod never builds a model of its own"):
        load_settings("prod", {"model.base_uri": "builtin:tiny"})
    with pytest.raises(OnboardingError, match=r"model.base_uri is not set"):
        from continuous_learning.models.onboarding import import_spec

        import_spec(load_settings("prod"), "r", "file:///tmp/x")
