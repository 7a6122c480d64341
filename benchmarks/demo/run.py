"""Measure `make demo`'s run time (after install) and write RESULTS.md beside this file.

Baseline measured in the same run: one `airflow dags test` of `interaction_ingest` on an empty day,
the fixed cost of starting Airflow for a DAG run; the demo's time is reported as a multiple of it.
Usage: .venv/bin/python benchmarks/demo/run.py
"""

from __future__ import annotations

import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def timed(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.monotonic()
    out = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, check=True)
    return time.monotonic() - start, out.stdout


def main() -> int:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    with tempfile.TemporaryDirectory() as home:
        base_env = {
            **env,
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "CL_STORAGE__ROOT": f"file://{home}/data",
        }
        print("baseline: airflow db migrate + one empty interaction_ingest run", flush=True)
        subprocess.run(["airflow", "db", "migrate"], env=base_env, capture_output=True, check=True)
        baseline, _ = timed(["airflow", "dags", "test", "interaction_ingest", "2026-11-01"], base_env)
    print(f"baseline {baseline:.1f} s; running the demo", flush=True)
    demo_seconds, output = timed([sys.executable, "scripts/demo.py"], env)
    stages = re.findall(r"^\[\s*([\d.]+)s\] (.*)$", output, flags=re.M)
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    lines = [
        "# `make demo` run time",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}.",
        f"Command: `{Path(sys.executable).name} benchmarks/demo/run.py` (after `make venv`).",
        "",
        "| measurement | seconds | x baseline |",
        "|---|---:|---:|",
        f"| baseline: one empty `airflow dags test interaction_ingest` | {baseline:.1f} | 1.0 |",
        f"| `make demo` (3 days, both DAGs, 400 interactions/day) | {demo_seconds:.1f} | {demo_seconds / baseline:.1f} |",
        "",
        f"Goal: at most 900 s. Peak RSS of the largest child process: {peak_mib:.0f} MiB.",
        "",
        "Stage start times (seconds from the demo's start):",
        "",
        *[f"- {t} s: {stage}" for t, stage in stages],
        "",
    ]
    (Path(__file__).parent / "RESULTS.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
