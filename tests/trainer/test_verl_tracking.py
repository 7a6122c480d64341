"""VeRL's own MLflow logger gets the run's MLflow run: ``mlflow`` in ``trainer.logger`` and the MLflow
environment in the trainer's Ray workers, composed against VeRL 0.9.1's configs; nothing when off."""

from __future__ import annotations

from pathlib import Path

from continuous_learning_trainer.verl_engine.layout import Layout
from continuous_learning_trainer.verl_engine.overrides import build_overrides, tracking_env

from tests.trainer.helpers import compose, needs_verl_config, run_spec

LAYOUT = Layout(Path("/fsx/runs/run-1"))
TRACKING = {
    "tracking_uri": "http://mlflow.internal:5000",
    "experiment": "continuous-learning",
    "run_id": "abc123",
}


@needs_verl_config
def test_tracking_adds_verls_mlflow_logger_and_its_environment() -> None:
    on, off = run_spec(tracking=TRACKING), run_spec()
    sft = run_spec(tracking=TRACKING, algorithm="sft")
    results = compose(
        [build_overrides(on, LAYOUT), build_overrides(off, LAYOUT),
         {"config": "sft_trainer_engine", "overrides": build_overrides(sft, LAYOUT, train_rows=64)}]
    )  # fmt: skip
    assert all(r["ok"] for r in results), results
    values_on, values_off, values_sft = (r["values"] for r in results)
    assert values_on["trainer.logger"] == ["console", "file", "mlflow"]
    assert values_off["trainer.logger"] == ["console", "file"]
    assert values_sft["trainer.logger"] == ["console", "file", "mlflow"]
    env = values_on["ray_kwargs.ray_init.runtime_env.env_vars"]
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.internal:5000" and env["MLFLOW_RUN_ID"] == "abc123"
    assert not any(k.startswith("MLFLOW_") for k in values_off["ray_kwargs.ray_init.runtime_env.env_vars"])
    assert tracking_env(off) == {} and tracking_env(on)["MLFLOW_EXPERIMENT_NAME"] == "continuous-learning"
