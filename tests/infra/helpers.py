"""Helpers shared by the infrastructure checks: the chart rendered by helm, its YAML documents, and Terraform's
HCL read as JSON (python-hcl2). Tool paths and subprocess runs are in tests/infra/conftest.py."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.infra.conftest import CHART, HELM, INFRA, INFRA_PY, require, run

TF = INFRA / "terraform"
HCL_JSON = INFRA / "checks" / "hcl_json.py"


def hcl(*directories: Path) -> dict[str, dict]:
    """Each .tf file of ``directories``, parsed by python-hcl2 (in the infra-py venv), quotes stripped."""
    result = run(require(INFRA_PY), HCL_JSON, *directories)
    assert result.returncode == 0, result.stderr[-2000:]
    return dict(json.loads(result.stdout))


def blocks(docs: dict[str, dict], kind: str) -> dict[str, dict]:
    """``resource``/``data`` blocks as {"type.name": body}; ``variable``/``module``/``output`` as {name: body}."""
    found = {}
    for doc in docs.values():
        for block in doc.get(kind, []):
            for key, value in block.items():
                if kind in ("resource", "data"):
                    found.update({f"{key}.{name}": body for name, body in value.items()})
                else:
                    found[key] = value
    return found


def render(*args: str) -> str:
    result = run(require(HELM), "template", "continuous-learning", CHART, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]
