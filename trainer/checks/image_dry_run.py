"""A CPU-only dry run of a VeRL training job inside the built trainer image (trainer/image/smoke.sh).

Runs as the image's user with the image's interpreter: writes a RunSpec document to the work folder,
reads it back through the project's own ``RunSpec.read`` (the path ``python -m continuous_learning_trainer
train --spec URI`` takes), builds VeRL's Hydra overrides with ``verl_engine.build_overrides`` for the run's
layout under ``$CL_WORK_DIR``, composes them with VeRL 0.9.1's own ``ppo_trainer`` config as installed in
the image (every override must exist there, or Hydra refuses it), and writes the overrides and the values
they resolved to into ``$CL_WORK_DIR/dry-run/``. Nothing starts Ray, loads a model or needs a GPU.

``python image_dry_run.py`` prints one JSON line: the counts and a few resolved values.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SPEC: dict[str, Any] = {
    "run_id": "smoke-1",
    "engine": "verl",
    "algorithm": "grpo",
    "dataset": {
        "dataset_id": "ds-smoke",
        "train_uri": "file:///data/ds/train.parquet",
        "validation_uri": "file:///data/ds/validation.parquet",
        "test_uri": "file:///data/ds/test.parquet",
        "manifest_uri": "file:///data/ds/manifest.json",
    },
    "base_model_uri": "file:///data/models/base",
    "base_model_version": "v1",
    "output_uri": "file:///data/runs/smoke-1",
    "hyperparameters": {
        "learning_rate": 1e-6,
        "max_steps": 4,
        "samples_per_prompt": 4,
        "prompts_per_step": 8,
        "max_completion_tokens": 64,
        "kl_coef": 0.001,
        "checkpoint_every": 2,
    },
    "resources": {"nnodes": 1, "n_gpus_per_node": 8, "gpu_class": "h200"},
}


def compose(overrides: list[str]) -> dict[str, Any]:
    """VeRL's ``ppo_trainer`` config composed with ``overrides``: the value each override resolved to."""
    import importlib.util

    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    spec = importlib.util.find_spec("verl")
    assert spec is not None and spec.submodule_search_locations
    config_dir = Path(next(iter(spec.submodule_search_locations))) / "trainer" / "config"
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        cfg = hydra_compose(config_name="ppo_trainer", overrides=overrides)
    values: dict[str, Any] = {}
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        node = OmegaConf.create({"v": OmegaConf.select(cfg, key, throw_on_missing=True)})
        values[key] = OmegaConf.to_container(node, resolve=True)["v"]
    return values


def main() -> int:
    from continuous_learning.contracts import RunSpec
    from continuous_learning_trainer.verl_engine.layout import Layout
    from continuous_learning_trainer.verl_engine.overrides import build_overrides

    work = Path(os.environ.get("CL_WORK_DIR", "/workspace")) / "dry-run"
    work.mkdir(parents=True, exist_ok=True)
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(SPEC, indent=1))
    spec = RunSpec.read(f"file://{spec_path}")
    overrides = build_overrides(spec, Layout(work / "run"), train_rows=1000)
    values = compose(overrides)
    (work / "overrides.json").write_text(json.dumps(overrides, indent=1))
    (work / "resolved.json").write_text(json.dumps(values, indent=1, sort_keys=True, default=str))
    summary = {
        "spec": spec.run_id,
        "overrides": len(overrides),
        "composed_with": "verl ppo_trainer",
        "written": sorted(p.name for p in work.iterdir()),
        "algorithm.adv_estimator": values.get("algorithm.adv_estimator"),
        "actor_rollout_ref.rollout.name": values.get("actor_rollout_ref.rollout.name"),
        "trainer.n_gpus_per_node": values.get("trainer.n_gpus_per_node"),
    }
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
