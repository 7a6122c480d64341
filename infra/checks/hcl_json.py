"""Print Terraform files parsed by python-hcl2 as JSON, for structural tests (no providers needed).

Usage: python hcl_json.py DIR [DIR ...]
Prints {"<dir>/<file>.tf": <parsed document>, ...} with string quotes stripped (hcl_checks.unq).
Runs in the .tools/infra-py venv (python-hcl2).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hcl2
from hcl_checks import unq


def main(directories: list[str]) -> int:
    parsed = {}
    for directory in directories:
        for path in sorted(Path(directory).glob("*.tf")):
            with path.open() as handle:
                parsed[str(path)] = unq(hcl2.load(handle))
    json.dump(parsed, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
