#!/usr/bin/env bash
# A small venv under .tools/ with VeRL 0.9.1's config files and Hydra, used by the tests that
# compose VeRL's own Hydra config with the overrides the trainer builds.
#
# Why not the dev venv: `pip install verl==0.9.1` there would downgrade locked packages
# (tensordict -> pyvers pins packaging<26: packaging 26.4 -> 25.0 and virtualenv with it;
# hydra-core/omegaconf pin antlr4-python3-runtime==4.9.*: 4.13.2 -> 4.9.3, which moto's
# server uses). Composition needs only the YAML files and Hydra, so verl is installed here
# without its dependencies. The rendering-parity test (tests/trainer/test_prompt_parity.py) also runs
# VeRL's tool schemas (pydantic) and a tokenizer's chat template (transformers) here: both at the
# versions of the project's locks, requirements.txt and requirements-dev.txt (used as pip constraints;
# torch is not needed).
# Idempotent: a second run with the same versions does nothing.
set -euo pipefail
VERL_VERSION="${VERL_VERSION:-0.9.1}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="${TOOLS_DIR:-$ROOT/.tools}"
VENV="$TOOLS/verl-config"
# bump the suffix when the venv's contents change, so existing venvs are rebuilt
STAMP="$TOOLS/stamps/verl-config-$VERL_VERSION-render1"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"

if [[ -f "$STAMP" && -x "$VENV/bin/python" ]]; then
  exit 0
fi
mkdir -p "$TOOLS/stamps"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  "hydra-core==1.3.8" "omegaconf==2.3.1" "antlr4-python3-runtime==4.9.3" "PyYAML>=6" "packaging>=24"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps "verl==$VERL_VERSION"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -c "$ROOT/requirements.txt" -c "$ROOT/requirements-dev.txt" \
  pydantic transformers jinja2
"$VENV/bin/python" - <<'PY'
import importlib.metadata, importlib.util, pathlib
spec = importlib.util.find_spec("verl")
config = pathlib.Path(spec.submodule_search_locations[0]) / "trainer" / "config"
assert (config / "ppo_trainer.yaml").is_file(), config
print("verl", importlib.metadata.version("verl"), "config at", config)
for dist in ("pydantic", "transformers"):
    print(dist, importlib.metadata.version(dist))
PY
touch "$STAMP"
