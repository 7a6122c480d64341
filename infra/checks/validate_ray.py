"""Validate ray.io manifests against the KubeRay CRDs' openAPIV3Schema, the way the API server would.

Usage: python validate_ray.py CRD_DIR MANIFEST.yaml [...]
Prints one JSON line per ray.io document ({"kind", "name", "errors": [...]}) and exits 1 when any
document has an error or a ray.io kind has no CRD. Objects in the schema that declare `properties`
but neither `additionalProperties` nor `x-kubernetes-preserve-unknown-fields` reject unknown
fields (structural-schema pruning would silently drop them; here they are errors).
Runs in the .tools/infra-py venv (jsonschema, PyYAML).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

# The strictness rule is the product's own (the runtime validates the manifests it renders with it);
# crd_schemas needs only the standard library at import time.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))
from continuous_learning.compute.crd_schemas import strict


def load_schemas(crd_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(crd_dir.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group = doc["spec"]["group"]
            kind = doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                schema = strict(version["schema"]["openAPIV3Schema"])
                schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def main(argv: list[str]) -> int:
    schemas = load_schemas(Path(argv[1]))
    failed = False
    seen = 0
    for manifest in argv[2:]:
        for doc in yaml.safe_load_all(Path(manifest).read_text()):
            if not doc or not str(doc.get("apiVersion", "")).startswith("ray.io/"):
                continue
            seen += 1
            key = (doc["apiVersion"], doc["kind"])
            name = doc.get("metadata", {}).get("name", "?")
            if key not in schemas:
                errors = [f"no CRD schema for {key[0]} {key[1]}"]
            else:
                validator = jsonschema.Draft7Validator(schemas[key])
                errors = [
                    f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
                    for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
                ]
            failed = failed or bool(errors)
            print(json.dumps({"kind": doc["kind"], "name": name, "errors": errors}))
    if seen == 0:
        print(json.dumps({"error": "no ray.io documents found"}))
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
