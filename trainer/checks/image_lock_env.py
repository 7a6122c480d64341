"""How trainer/image/requirements.lock is installed into a clean venv on a CPU machine.

The lock is for the image: linux x86_64, CPython 3.12, CUDA 13 (torch 2.11.0 is PyPI's CUDA 13.0 build).
CI and the developers' machines have no GPU, and CPython 3.11 (the project's Python); where a CPython 3.12
is on the machine too (pyenv's 3.12.1 is, on the current machine kind), install-image-lock-env.sh takes it,
the image's own minor version. The venv under .tools/image-lock is the lock as close as such a machine can
hold it, and this module says exactly where it differs:

* every locked distribution is installed at its locked version with ``--no-deps`` (the lock alone decides
  what is there: a package the image lacks is absent here too, and its import fails), from PyPI's
  CPython 3.11 wheel of that version, hash-checked against the lock (uv wrote every file's hash); torch
  included: the lock's 2.11.0 is PyPI's CUDA 13.0 build, which imports without a GPU (see SKIPPED);
* on CPython 3.11 only, SUBSTITUTED: installed at another version, without the lock's hash (scipy: no
  cp311 wheel), and IGNORE_REQUIRES_PYTHON: the locked pure-Python wheel says ``Requires-Python >=3.12``;
  installed anyway (on 3.12 both are the locked files, hash-checked, like everything else);
* SDIST: the locked version exists only as an sdist; built here from the hash-checked sdist;
* SKIPPED: not installed, with the reason (none at present).

What stays different from the image: CPython 3.11 where no 3.12 is found, and no GPU and no CUDA driver
(libcuda.so.1: install-image-lock-env.sh builds a stand-in that only satisfies the loader; see
tests/trainer/test_image_lock.py for what that does and does not cover).

``python3.X image_lock_env.py plan DIR`` (the venv's interpreter) writes the requirement files that install-image-lock-env.sh installs,
and DIR/plan.json (what was skipped or substituted, and why) for the test and its printout.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "trainer" / "image" / "requirements.lock"
ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s\\;]+)")

#: On CPython 3.11: name -> (version installed instead, why). Not hash-checked: other files than the lock's.
SUBSTITUTED: dict[str, tuple[str, str]] = {
    "scipy": (
        "1.17.1",
        "scipy 1.18.1 has no CPython 3.11 wheel (Requires-Python >=3.12); 1.17.1 is the newest that has one",
    ),
}

#: On CPython 3.11: locked pure-Python wheels that say Requires-Python >=3.12: the locked file, installed anyway.
IGNORE_REQUIRES_PYTHON = {"airportsdata", "networkx"}

#: Locked versions published only as an sdist (the image's pip builds it the same way).
SDIST = {"antlr4-python3-runtime"}

#: name -> why it is not installed. Empty: everything else installs here. Not the CPU torch on disk either:
#: torch is the lock's own 2.11.0 (PyPI's CUDA 13.0 build, with its nvidia-* CUDA 13 libraries, about 2.7 GB
#: of wheels), which imports on a machine without a GPU. With the CPU build instead, torchvision 0.26.0
#: (built against torch 2.11.0 CUDA) fails at import ("operator torchvision::nms does not exist"), and
#: sglang imports torchvision at the top of sglang.srt.utils, so not one SGLang module could be checked.
SKIPPED: dict[str, str] = {}
#: Top-level import names that only the skipped distributions provide (a ModuleNotFoundError for one of
#: them is "skipped here", not "missing from the lock").
SKIPPED_IMPORT_NAMES: set[str] = set()


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_entries(lock: Path = LOCK) -> list[tuple[str, str, list[str]]]:
    """(normalised name, version, hashes) per locked requirement."""
    entries: list[tuple[str, str, list[str]]] = []
    for line in lock.read_text().splitlines():
        if match := ENTRY.match(line):
            entries.append((normalise(match.group(1)), match.group(3), []))
        elif line.strip().startswith("--hash=sha256:"):
            entries[-1][2].append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
    return entries


def plan(out: Path, python: str, lock: Path = LOCK) -> dict[str, object]:
    """Write the requirement files for a venv of CPython ``python`` ("3.11" or "3.12") and plan.json."""
    if python not in ("3.11", "3.12"):
        raise SystemExit(f"image_lock_env.py: CPython 3.11 or 3.12 only, not {python}")
    entries = lock_entries(lock)
    locked = {name: version for name, version, _ in entries}
    for table in (SUBSTITUTED, SKIPPED, dict.fromkeys(IGNORE_REQUIRES_PYTHON), dict.fromkeys(SDIST)):
        unknown = sorted(set(table) - set(locked))
        if unknown:
            raise SystemExit(f"image_lock_env.py names packages the lock does not hold: {unknown}")
    substituted = SUBSTITUTED if python == "3.11" else {}
    ignore_requires_python = IGNORE_REQUIRES_PYTHON if python == "3.11" else set()
    files: dict[str, list[str]] = {"hashed": [], "ignore-requires-python": [], "sdist": [], "substituted": []}
    for name, version, hashes in entries:
        pinned = f"{name}=={version} " + " ".join(f"--hash=sha256:{h}" for h in hashes)
        if name in SKIPPED:
            continue
        if name in substituted:
            files["substituted"].append(f"{name}=={substituted[name][0]}")
        elif name in ignore_requires_python:
            files["ignore-requires-python"].append(pinned)
        elif name in SDIST:
            files["sdist"].append(pinned)
        else:
            files["hashed"].append(pinned)
    out.mkdir(parents=True, exist_ok=True)
    for kind, lines in files.items():
        (out / f"{kind}.txt").write_text("".join(line + "\n" for line in lines))
    summary: dict[str, object] = {
        "python": python,
        "locked": locked,
        "expected": {
            name: substituted[name][0] if name in substituted else version
            for name, version in locked.items()
            if name not in SKIPPED
        },
        "substituted": {
            n: {"locked": locked[n], "installed": v, "why": w} for n, (v, w) in substituted.items()
        },
        "skipped": {n: {"locked": locked[n], "why": w} for n, w in sorted(SKIPPED.items())},
        "ignore_requires_python": sorted(ignore_requires_python),
        "sdist": sorted(SDIST),
        "skipped_import_names": sorted(SKIPPED_IMPORT_NAMES),
    }
    (out / "plan.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    return summary


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "plan":
        raise SystemExit("usage: image_lock_env.py plan OUTDIR")
    result = plan(Path(sys.argv[2]), f"{sys.version_info[0]}.{sys.version_info[1]}")
    print(f"{len(result['expected'])} of {len(result['locked'])} locked distributions to install")  # type: ignore[arg-type]
