"""Shared helpers for the infrastructure checks: tool paths and subprocess runs.

The tools come from `make infra-tools` (infra/checks/install-tools.sh) under <repo>/.tools.
A missing tool is a test failure, not a skip: `make test` installs them first. KubeRay's CRDs are no
tool and not in the repository: the checks that need them skip, saying so, where they are absent.
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
#: KubeRay's own CRDs: not part of the repository. CI has them beside the clone; CL_KUBERAY_CRDS wins.
CRDS = Path(os.environ.get("CL_KUBERAY_CRDS") or REPO.parent / "shared" / "kuberay-crds")


def require(tool: Path) -> Path:
    if not tool.exists():
        pytest.fail(f"{tool} is missing: run `make infra-tools` (infra/checks/install-tools.sh)")
    return tool


def require_crds() -> Path:
    """KubeRay's CRDs, or a skip that says what is skipped without them."""
    if not (CRDS / "ray.io_rayclusters.yaml").is_file():
        pytest.skip(
            f"KubeRay's CRDs not provided (CL_KUBERAY_CRDS unset, no {CRDS}): the check of the chart's ray.io "
            "manifests against KubeRay's CRD schema is skipped (the core kinds are still validated)"
        )
    return CRDS


def run(*args: str | Path, cwd: Path = REPO, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{TOOLS / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
