"""Settings from an external file: ``CL_SETTINGS_FILE`` instead of the built-in ``environments/*.toml``."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from continuous_learning.config import ENVIRONMENTS_DIR, ConfigError, load_settings


@pytest.fixture
def settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A prod settings document of the deployment's own (a copy of prod.toml with a few changes)."""
    text = (ENVIRONMENTS_DIR / "prod.toml").read_text()
    document = tomllib.loads(text)
    assert document["env"] == "prod"
    text, replaced = re.subn(r'(?m)^root = ".*"$', 'root = "s3://acme-agents/continuous-learning"', text)
    text, renamed = re.subn(
        r'(?m)^sagemaker_model_package_group = ".*"$', 'sagemaker_model_package_group = "acme-agent"', text
    )
    assert (replaced, renamed) == (1, 1)
    path = tmp_path / "etc" / "settings.toml"
    path.parent.mkdir()
    path.write_text(text)
    monkeypatch.delenv("CL_ENV", raising=False)
    monkeypatch.delenv("CL_STORAGE__ROOT", raising=False)
    monkeypatch.setenv("CL_SETTINGS_FILE", str(path))
    return path


def test_the_file_replaces_the_built_in_environment(settings_file: Path) -> None:
    settings = load_settings()
    assert settings.env == "prod"  # from the file's own env key
    assert settings.storage.root == "s3://acme-agents/continuous-learning"
    assert settings.registry.sagemaker_model_package_group == "acme-agent"
    assert load_settings("prod").storage.root == settings.storage.root


def test_overrides_and_environment_variables_still_win(
    settings_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CL_TRAINER__MAX_STEPS", "5")
    settings = load_settings(overrides={"evaluation.max_prompts": 7})
    assert (settings.trainer.max_steps, settings.evaluation.max_prompts) == (5, 7)
    assert settings.with_overrides({"trainer.max_steps": 6}).trainer.max_steps == 6


def test_a_local_settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "local.toml"
    path.write_text((ENVIRONMENTS_DIR / "local.toml").read_text().replace("max_steps = 80", "max_steps = 3"))
    monkeypatch.setenv("CL_SETTINGS_FILE", str(path))
    monkeypatch.setenv("CL_ENV", "local")  # agrees with the file
    settings = load_settings()
    assert (settings.env, settings.trainer.max_steps) == ("local", 3)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "the settings file does not exist"),
        ("folder", "the settings file is a folder, not a file"),
        ("env = 'prod'\n[storage\n", "not valid TOML"),
        ("[storage]\nroot = 's3://b'\n", "no env key; a settings file names its environment"),
        (
            "env = 'staging'\n",
            "env = 'staging'; a settings file names its environment: env = one of local, prod",
        ),
        ("env = 'prod'\n", "invalid settings: storage: Field required"),
    ],
)
def test_a_missing_or_bad_file_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None, message: str
) -> None:
    path = tmp_path / "settings.toml"
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    monkeypatch.delenv("CL_ENV", raising=False)
    monkeypatch.setenv("CL_SETTINGS_FILE", str(path))
    with pytest.raises(
        ConfigError, match="CL_SETTINGS_FILE" if "invalid settings" not in message else "storage"
    ) as err:
        load_settings()
    assert message in str(err.value)
    if content is not None and "invalid" not in message:
        assert str(path) in str(err.value)


def test_an_unreadable_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "settings.toml"
    path.write_text("env = 'prod'\n")
    real_open = Path.open

    def refuse(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == path:  # as chmod 0 would, for a user other than root
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    monkeypatch.setenv("CL_SETTINGS_FILE", str(path))
    with pytest.raises(ConfigError, match=r"cannot read the settings file: .*Permission denied"):
        load_settings()


def test_asking_for_another_environment_than_the_files_is_an_error(
    settings_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match=r"'local' was asked for .* is a 'prod' settings document"):
        load_settings("local")
    monkeypatch.setenv("CL_ENV", "local")
    with pytest.raises(ConfigError, match="is a 'prod' settings document"):
        load_settings()


def test_without_the_variable_the_built_in_environments_stay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CL_SETTINGS_FILE", raising=False)
    assert load_settings("prod").env == "prod"
    assert load_settings("local").env == "local"
