"""Import a list of modules in the image-lock venv and say, for each, what happened.

Run by tests/trainer/test_image_lock.py with the venv's interpreter (never the dev venv's):
``.tools/image-lock/bin/python trainer/checks/image_lock_probe.py TARGETS.json RESULT.json``.
TARGETS.json is a list of {"module": "trl", "names": ["SFTTrainer"]}: ``import module``, then each name
as an attribute or, failing that, a submodule (what ``from module import name`` does); with "call":
["RolloutReplicaRegistry.get", "sglang"], the attribute path is then called with the rest as arguments
(VeRL loads its rollout server class so, with environment of its own). Only the standard library is used
here, so the probe itself adds nothing to the venv.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import site
import sys
import time
import traceback
from typing import Any


def probe(module: str, names: list[str], call: list[str] | None = None) -> dict[str, Any]:
    started = time.monotonic()
    result: dict[str, Any] = {"module": module, "names": names, "status": "ok"}
    if call:
        result["call"] = call
    try:
        imported = importlib.import_module(module)
        for name in names:
            if not hasattr(imported, name):
                importlib.import_module(f"{module}.{name}")
        if call:
            function: Any = imported
            for part in call[0].split("."):
                function = getattr(function, part)
            function(*call[1:])
    except BaseException as exc:  # an import may raise anything, SystemExit included
        result["status"] = "error"
        result["error_type"] = type(exc).__name__
        result["error"] = str(exc)[:2000]
        if isinstance(exc, ModuleNotFoundError):
            result["missing"] = exc.name
        frames = traceback.extract_tb(exc.__traceback__)
        result["where"] = [f"{f.filename}:{f.lineno}" for f in frames[-6:]]
    result["seconds"] = round(time.monotonic() - started, 2)
    return result


def main(targets_path: str, result_path: str) -> int:
    with open(targets_path) as f:
        targets = json.load(f)
    # what pip installed (site-packages only: ray puts its vendored thirdparty_files on sys.path on import)
    installed = {
        (d.metadata["Name"] or "").lower(): d.version
        for d in importlib.metadata.distributions(path=site.getsitepackages())
    }
    results = [probe(t["module"], list(t.get("names", [])), t.get("call")) for t in targets]
    providers = importlib.metadata.packages_distributions()
    loaded = sorted({name.split(".")[0] for name in list(sys.modules)})
    doc = {
        "python": sys.version.split()[0],
        "results": results,
        "loaded_distributions": sorted({d for top in loaded for d in providers.get(top, [])}),
        "installed": installed,
        "providers": {top: sorted(set(dists)) for top, dists in providers.items()},
    }
    with open(result_path, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
