from __future__ import annotations

import pytest
from continuous_learning.config import ConfigError, load_settings


def test_local_defaults_resolve_relative_root(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("CL_STORAGE__ROOT", raising=False)
    monkeypatch.setenv("CL_HOME", str(tmp_path))
    settings = load_settings("local")
    assert settings.env == "local"
    assert settings.storage.root == f"file://{tmp_path}/.cl-data"
    assert settings.compute.backend == "local_ray"
    assert settings.trainer.engine == "cpu"


def test_prod_file_selects_aws_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CL_STORAGE__ROOT", raising=False)
    settings = load_settings("prod")
    assert settings.storage.root.startswith("s3://")
    assert settings.compute.backend == "kuberay"
    assert settings.trainer.engine == "verl"


def test_env_var_overrides_file_and_overrides_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CL_TRAINER__MAX_STEPS", "7")
    assert load_settings("local").trainer.max_steps == 7
    assert load_settings("local", {"trainer.max_steps": 3}).trainer.max_steps == 3


def test_cl_env_selects_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CL_ENV", "prod")
    monkeypatch.delenv("CL_STORAGE__ROOT", raising=False)
    assert load_settings().env == "prod"


def test_bad_enum_names_key_and_allowed_values() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings("local", {"trainer.engine": "gpu"})
    message = str(err.value)
    assert "trainer.engine" in message
    assert "'cpu' or 'verl'" in message
    assert "'gpu'" in message


def test_out_of_range_and_unknown_keys_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"dataset\.lookback_days"):
        load_settings("local", {"dataset.lookback_days": 0})
    with pytest.raises(ConfigError, match=r"trainer\.learning_rat.*unknown setting"):
        load_settings("local", {"trainer.learning_rat": 0.1})


def test_unknown_environment_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown environment 'staging'; allowed: local, prod"):
        load_settings("staging")


def test_bad_storage_scheme() -> None:
    with pytest.raises(ConfigError, match=r"storage\.root: .*file:// or s3://"):
        load_settings("local", {"storage.root": "gs://bucket"})


def test_with_overrides_keeps_other_values() -> None:
    base = load_settings("local")
    changed = base.with_overrides({"evaluation.margin": 0.05})
    assert changed.evaluation.margin == 0.05
    assert changed.trainer == base.trainer
