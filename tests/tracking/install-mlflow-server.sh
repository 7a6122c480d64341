#!/usr/bin/env bash
# The MLflow server the tracking tests start, in its own venv: .tools/mlflow-server (pinned by
# tests/tracking/mlflow-server-requirements.txt; see there why not in the dev venv).
# Idempotent: a second run with the same lock does nothing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="${TOOLS_DIR:-$ROOT/.tools}"
VENV="$TOOLS/mlflow-server"
LOCK="$ROOT/tests/tracking/mlflow-server-requirements.txt"
STAMP="$TOOLS/stamps/mlflow-server-$(sha256sum "$LOCK" | cut -c1-16)"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"

if [[ -f "$STAMP" && -x "$VENV/bin/mlflow" ]]; then
  exit 0
fi
mkdir -p "$TOOLS/stamps"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --progress-bar off -r "$LOCK"
"$VENV/bin/mlflow" --version
rm -f "$TOOLS"/stamps/mlflow-server-*
touch "$STAMP"
