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


@pytest.mark.parametrize(
    ("environment", "checkpoint_seconds", "max_seconds"), [("local", None, 3000.0), ("prod", 1800.0, 85800.0)]
)
def test_run_spec_stops_before_the_job_timeout(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path,
    environment: str,
    checkpoint_seconds: float | None,
    max_seconds: float,
) -> None:
    from continuous_learning.contracts import DatasetRef, RunSpec
    from continuous_learning.training import write_run_spec

    monkeypatch.setenv("CL_HOME", str(tmp_path))
    settings = load_settings(environment, {"storage.root": f"file://{tmp_path}/data"})
    uri = f"file://{tmp_path}/ds"
    dataset = DatasetRef(dataset_id="d", train_uri=uri, validation_uri=uri, test_uri=uri, manifest_uri=uri)
    spec = RunSpec.read(write_run_spec(settings, dataset, f"file://{tmp_path}/m", "v0", "run-1"))
    hp = spec.hyperparameters
    assert hp.checkpoint_every_seconds == checkpoint_seconds
    # the trainer's own time limit leaves stop_reserve_s for the merge before the job is killed
    assert hp.max_seconds == max_seconds == settings.compute.job_timeout_s - settings.trainer.stop_reserve_s
