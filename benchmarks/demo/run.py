"""Measure `make demo`'s run time (after install), on the tiny model and on SmolLM2, and write RESULTS.md.

Baseline measured in the same run: one `airflow dags test` of `interaction_ingest` on an empty day,
the fixed cost of starting Airflow for a DAG run. Then the default demo (`DEMO_MODEL=tiny`) and
`DEMO_MODEL=smollm2` run one after the other; each is reported in seconds, as a multiple of the
baseline and (SmolLM2) of the default demo, with its per-day evaluation and gate decisions.
Progress: the demos' stage lines are echoed as they happen.
Usage: nice -n 10 .venv/bin/python benchmarks/demo/run.py [--models tiny,smollm2]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODELS = {"tiny": "tiny model built from the corpus (default)", "smollm2": "SmolLM2-135M-Instruct, LoRA"}
DAY_LINE = re.compile(r"^=== (\S+) ===$")
EVAL_LINE = re.compile(r"^\s+eval\s+candidate ([\d.]+) vs production ([\d.]+) on (\d+) held-out prompts")
GATE_LINE = re.compile(r"^\s+gate\s+(PROMOTE|REJECT): (.*)$")
TRAIN_LINE = re.compile(r"^\s+train\s+(\d+) GRPO steps from (\S+): reward ([\d.]+) -> ([\d.]+)")


@dataclass
class DemoRun:
    model: str
    seconds: float = 0.0
    stages: list[tuple[str, str]] = field(default_factory=list)
    days: list[dict[str, str]] = field(default_factory=list)


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.monotonic()
    subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, check=True)
    return time.monotonic() - start


def run_demo(model: str, env: dict[str, str]) -> DemoRun:
    """One `scripts/demo.py` run with ``DEMO_MODEL=model``, its output echoed line by line and parsed."""
    result = DemoRun(model)
    start = time.monotonic()
    with subprocess.Popen(
        [sys.executable, "scripts/demo.py"],
        env={**env, "DEMO_MODEL": model},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as demo:
        assert demo.stdout is not None
        for line in demo.stdout:
            line = line.rstrip("\n")
            print(f"  [{model} {time.monotonic() - start:7.1f}s] {line}", flush=True)
            if stage := re.match(r"^\[\s*([\d.]+)s\] (.*)$", line):
                result.stages.append((stage[1], stage[2]))
            elif day := DAY_LINE.match(line):
                result.days.append({"day": day[1]})
            elif result.days and (found := TRAIN_LINE.match(line)):
                result.days[-1]["train"] = (
                    f"{found[1]} steps from {found[2]}, reward {found[3]} -> {found[4]}"
                )
            elif result.days and (found := EVAL_LINE.match(line)):
                result.days[-1]["eval"] = (
                    f"candidate {found[1]} vs production {found[2]} ({found[3]} prompts)"
                )
            elif result.days and (found := GATE_LINE.match(line)):
                result.days[-1]["gate"] = f"{found[1]}: {found[2]}"
    result.seconds = time.monotonic() - start
    if demo.returncode != 0:
        raise SystemExit(f"DEMO_MODEL={model}: the demo failed (exit {demo.returncode}); see .demo/logs/")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,smollm2", help="comma-separated DEMO_MODEL values")
    models = [m for m in parser.parse_args().models.split(",") if m]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise SystemExit(f"--models: unknown {unknown}; allowed: {sorted(MODELS)}")
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
        baseline = timed(["airflow", "dags", "test", "interaction_ingest", "2026-11-01"], base_env)
    print(f"baseline {baseline:.1f} s", flush=True)
    runs = []
    for model in models:
        print(f"demo {model}: {MODELS[model]}", flush=True)
        runs.append(run_demo(model, env))
        print(f"demo {model}: {runs[-1].seconds:.1f} s", flush=True)
    reference = next((r for r in runs if r.model == "tiny"), None)
    load = os.getloadavg()
    lines = [
        "# `make demo` run time: the default tiny model and SmolLM2",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min).",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Command: "
        f"`nice -n 10 .venv/bin/python benchmarks/demo/run.py --models {','.join(models)}` (after `make venv`).",
        "",
        "| measurement | seconds | x baseline | x default demo |",
        "|---|---:|---:|---:|",
        f"| baseline: one empty `airflow dags test interaction_ingest` | {baseline:.1f} | 1.0 | |",
    ]
    for run in runs:
        ratio = f"{run.seconds / reference.seconds:.2f}" if reference else ""
        lines.append(
            f"| `make demo DEMO_MODEL={run.model}` ({MODELS[run.model]}; 3 days, both DAGs) "
            f"| {run.seconds:.1f} | {run.seconds / baseline:.1f} | {ratio} |"
        )
    lines += ["", "Goal of the default demo: at most 900 s.", ""]
    for run in runs:
        lines += [f"## DEMO_MODEL={run.model}", "", "Decisions:", ""]
        for day in run.days:
            details = "; ".join(f"{k} {day[k]}" for k in ("train", "eval", "gate") if k in day)
            lines.append(f"- {day['day']}: {details or 'training skipped'}")
        lines += ["", "Stage start times (seconds from the demo's start):", ""]
        lines += [f"- {t} s: {stage}" for t, stage in run.stages]
        lines.append("")
    (Path(__file__).parent / "RESULTS.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
