"""DAG parse time: each DAG file against an empty DAG file, once Airflow is imported.

Each sample is a fresh interpreter that first imports Airflow, then times ``runpy.run_path`` of one file:
what Airflow pays per file and parse. "Airflow imported" is measured two ways:

- ``sdk``: ``import airflow.sdk`` only (what tests/test_dag_integrity.py's probe does);
- ``processor``: ``import airflow.dag_processing.processor``, the module the DAG processor parses files
  with (it has timetables, triggers, assets and pydantic loaded already).

The baseline is a DAG file with a DAG and no tasks (a second one, the "Airflow floor", also imports the
Airflow modules our DAG files need from Airflow: cron and asset schedules, the HITL operator), measured in the same run, interleaved with the others
so that load on the machine hits all files alike. Bytecode is cached (in a temporary
``PYTHONPYCACHEPREFIX``, warmed once per file), as a deployed DAG processor has it: without it every
sample would time the compiler. The goal: every DAG file within 1.5x of the empty one.

    .venv/bin/python benchmarks/dag_parse/run.py [--samples 15] [--before DIR] [--write]

``--before DIR``: also time the DAG files of another checkout (``DIR/dags`` with ``DIR/plugins``), e.g.
``git archive <commit> dags plugins | tar -x -C DIR``, interleaved with these.

``--write`` replaces the tables of ``RESULTS.md`` beside this file (the notes below them are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).parent
REPO = HERE.parents[1]
GOAL = 1.5
NOTES = "<!-- notes: kept when run.py rewrites the tables above -->"

EMPTY_DAG = '''"""An empty DAG file: the baseline."""

from datetime import datetime

from airflow.sdk import DAG

with DAG(dag_id="empty", schedule=None, start_date=datetime(2026, 11, 1), catchup=False):
    pass
'''

# The second baseline: an empty DAG file that loads the Airflow modules our DAG files need from Airflow itself
# (cron and asset-or-time schedules, the HITL approval operator's base): the floor no DAG of ours can go under.
AIRFLOW_FLOOR_DAG = '''"""A DAG file with no tasks that imports what our DAGs need from Airflow: the second baseline."""

from datetime import datetime

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator  # noqa: F401
from airflow.sdk import DAG, AssetOrTimeSchedule, CronDataIntervalTimetable, CronTriggerTimetable, Param  # noqa: F401

with DAG(dag_id="floor", schedule=CronTriggerTimetable("0 2 * * *", timezone="UTC"),
         start_date=datetime(2026, 11, 1), catchup=False):
    pass
'''

PRELOAD = {"sdk": "airflow.sdk", "processor": "airflow.dag_processing.processor"}

PROBE = """
import importlib, json, runpy, sys, time
importlib.import_module(sys.argv[2])  # Airflow, loaded before any DAG file
before = set(sys.modules)
start = time.perf_counter()
runpy.run_path(sys.argv[1])
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "modules": len(set(sys.modules) - before)}))
"""


def sample(path: Path, preload: str, pycache: str, repo: Path = REPO) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env |= {"PYTHONPATH": os.pathsep.join([str(repo / "plugins"), str(repo)]), "PYTHONPYCACHEPREFIX": pycache}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), PRELOAD[preload]],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


Results = dict[str, dict[str, dict[str, float]]]  # preload -> file -> median_s, modules


def measure(samples: int, before: Path | None = None) -> Results:
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty_dag.py"
        empty.write_text(EMPTY_DAG)
        floor = Path(tmp) / "airflow_floor_dag.py"
        floor.write_text(AIRFLOW_FLOOR_DAG)
        files = {"(empty DAG file)": (empty, REPO), "(Airflow floor DAG file)": (floor, REPO)} | {
            p.name: (p, REPO) for p in sorted((REPO / "dags").glob("*.py"))
        }
        if before is not None:
            files |= {f"before: {p.name}": (p, before) for p in sorted((before / "dags").glob("*.py"))}
        times = {(pre, name): [] for pre in PRELOAD for name in files}  # type: dict[tuple[str, str], list[float]]
        modules: dict[tuple[str, str], float] = {}

        def run(key: tuple[str, str]) -> dict[str, float]:
            path, repo = files[key[1]]
            return sample(path, key[0], str(Path(tmp) / "pycache" / str(abs(hash(repo)))), repo)

        for key in times:
            run(key)  # warm the file and bytecode caches before timing
        for _ in range(samples):
            for key in times:  # interleaved: the machine's load hits every file alike
                probe = run(key)
                times[key].append(probe["seconds"])
                modules[key] = probe["modules"]
    results: Results = {pre: {} for pre in PRELOAD}
    for (pre, name), t in times.items():
        results[pre][name] = {"median_s": statistics.median(t), "modules": modules[(pre, name)]}
    return results


def table(results: Results, samples: int, before: Path | None = None) -> str:
    lines = [
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"load average {os.getloadavg()[0]:.1f} at the end (the machine is shared).",
        f"Command: `.venv/bin/python benchmarks/dag_parse/run.py --samples {samples}"
        + (f" --before {before}" if before else "")
        + " --write` "
        f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC). Median of {samples} fresh interpreters per file and mode.",
    ]
    for pre, by_file in results.items():
        base = by_file["(empty DAG file)"]["median_s"]
        lines += [
            "",
            f"Airflow imported as `import {PRELOAD[pre]}` ({pre}):",
            "",
            "| DAG file | median parse s | vs empty DAG file | within 1.5x | vs Airflow floor | modules it imports |",
            "|---|---:|---:|:---:|---:|---:|",
        ]
        floor = by_file["(Airflow floor DAG file)"]["median_s"]
        for name, r in by_file.items():
            ratio = r["median_s"] / base
            ok = "yes" if ratio <= GOAL else "**no**"
            lines.append(f"| {name} | {r['median_s']:.4f} | {ratio:.2f}x | {ok} | {r['median_s'] / floor:.2f}x | "
                         f"{int(r['modules'])} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--before", type=Path, help="another checkout whose DAG files to time too")
    parser.add_argument("--write", action="store_true", help="rewrite the tables of RESULTS.md")
    args = parser.parse_args()
    text = table(measure(args.samples, args.before), args.samples, args.before)
    print(text)
    if args.write:
        results = HERE / "RESULTS.md"
        old = results.read_text() if results.exists() else ""
        notes = old[old.index(NOTES) :] if NOTES in old else NOTES + "\n"
        results.write_text(f"# DAG parse time\n\n{text}\n\n{notes}")


if __name__ == "__main__":
    main()
