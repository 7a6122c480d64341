"""Shared helpers for the infrastructure checks: tool paths and subprocess runs.

The tools come from `make infra-tools` (infra/checks/install-tools.sh) under <repo>/.tools.
A missing tool is a test failure, not a skip: `make test` installs them first.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
TOOLS = Path(os.environ.get("CL_TOOLS_DIR", REPO / ".tools"))
CHECKOV = TOOLS / "checkov" / "bin" / "checkov"
INFRA_PY = TOOLS / "infra-py" / "bin" / "python"
KUBERNETES_VALIDATE = TOOLS / "infra-py" / "bin" / "kubernetes-validate"
HELM = TOOLS / "bin" / "helm"
TERRAFORM = TOOLS / "bin" / "terraform"
CHART = INFRA / "helm" / "continuous-learning"
CRDS = REPO.parent / "shared" / "kuberay-crds"


def require(tool: Path) -> Path:
    if not tool.exists():
        pytest.fail(f"{tool} is missing: run `make infra-tools` (infra/checks/install-tools.sh)")
    return tool


def run(*args: str | Path, cwd: Path = REPO, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{TOOLS / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
