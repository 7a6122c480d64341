"""Compose VeRL's own Hydra configs with lists of overrides; print what they set.

Runs with the interpreter of ``.tools/verl-config`` (VeRL's config files + Hydra; see
install-verl-config.sh). Input on stdin: a JSON list of cases, each an override list (composed with
``ppo_trainer``, main_ppo's config) or ``{"config": NAME, "overrides": [...]}`` (e.g.
``sft_trainer_engine``, the SFT trainer's). Output on stdout: a JSON list with, per case, either
``{"ok": true, "values": {key: resolved value}}`` for every key the overrides name, or
``{"ok": false, "error": "..."}``.
"""

import importlib.util
import json
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

# the package's location without importing it (importing verl needs torch, which this venv lacks)
_VERL = importlib.util.find_spec("verl")
assert _VERL is not None and _VERL.submodule_search_locations, "verl is not installed here"
CONFIG_DIR = Path(next(iter(_VERL.submodule_search_locations))) / "trainer" / "config"


def main() -> None:
    cases = json.load(sys.stdin)
    results = []
    for case in cases:
        config_name, overrides = (
            (case["config"], case["overrides"]) if isinstance(case, dict) else ("ppo_trainer", case)
        )
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
                cfg = compose(config_name=config_name, overrides=overrides)
            values = {}
            for override in overrides:
                key = override.split("=", 1)[0].lstrip("+~")
                values[key] = OmegaConf.to_container(
                    OmegaConf.create({"v": OmegaConf.select(cfg, key, throw_on_missing=True)}), resolve=True
                )["v"]
            results.append({"ok": True, "values": values})
        except Exception as exc:  # report every case, not only the first failure
            results.append({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
