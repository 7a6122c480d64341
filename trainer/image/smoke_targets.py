"""What trainer/image/smoke.sh imports inside the built image: the same module groups as
tests/trainer/test_image_lock.py (which checks the lock in a venv on the host), so the image is checked
against exactly the list CI keeps up to date: the project's modules and every third-party module they
import (found by reading the code), VeRL's and SGLang's entry-point modules, VeRL's rollout-replica call
and its FSDP worker init (trainer/checks/verl_worker_init.py).

``python smoke_targets.py write OUTDIR`` (the repository's .venv: the test module imports pytest) writes
OUTDIR/GROUP.targets.json per group; ``python smoke_targets.py summary OUTDIR`` reads the probe's
OUTDIR/GROUP.json results, prints one line per group and every failure, and exits 1 on any failure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def groups() -> dict[str, list[dict[str, Any]]]:
    sys.path.insert(0, str(ROOT))
    from tests.trainer import test_image_lock as t

    project, third, _ = t.project_targets()
    return {
        "project": [{"module": m, "names": sorted(n)} for m, n in sorted(third.items())]
        + [{"module": m} for m in project],
        "verl": [{"module": m} for m in t.VERL_MODULES] + [dict(c) for c in t.VERL_CALLS],
        "verl-worker": [dict(c) for c in t.VERL_WORKER_CALLS],
        "sglang": [{"module": m} for m in t.SGLANG_MODULES],
    }


def write(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, targets in groups().items():
        clean = [{k: v for k, v in target.items() if k != "why"} for target in targets]
        (out / f"{name}.targets.json").write_text(json.dumps(clean))
    print(" ".join(sorted(groups())))


def summary(out: Path) -> int:
    failed = 0
    for path in sorted(out.glob("*.targets.json")):
        name = path.name.removesuffix(".targets.json")
        result = out / f"{name}.json"
        if not result.exists():
            print(f"  {name}: no result (the probe did not finish)")
            failed += 1
            continue
        doc = json.loads(result.read_text())
        bad = [r for r in doc["results"] if r["status"] != "ok"]
        seconds = sum(r["seconds"] for r in doc["results"])
        print(
            f"  {name}: {len(doc['results']) - len(bad)}/{len(doc['results'])} imported (Python {doc['python']}, {seconds:.0f}s)"
        )
        for r in bad:
            print(
                f"    FAIL {r['module']} {r.get('call', '')}: {r.get('error_type')}: {r.get('error', '')[:300]}"
            )
        failed += len(bad)
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "summary"):
        raise SystemExit("usage: smoke_targets.py write|summary OUTDIR")
    if sys.argv[1] == "write":
        write(Path(sys.argv[2]))
    else:
        raise SystemExit(summary(Path(sys.argv[2])))
