"""`make demo`: three days of synthetic agent logs through both DAGs, in real Airflow, on this machine.

Everything lands under `.demo/` in the repository: Airflow's SQLite database and logs, and the
pipeline's storage (raw logs, curated data, reward datasets, runs, registry).

`DEMO_MODEL` picks the day-0 model: `tiny` (default: a tiny model built from the corpus, fast) or
`smollm2` (`make demo DEMO_MODEL=smollm2`: the real pretrained SmolLM2-135M-Instruct, imported as the
user's model, warm-started on the agent's logged answers so that it plays the agent, then LoRA GRPO).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / ".demo"
START = date(2026, 11, 24)
DAYS = 3
PER_DAY = int(os.environ.get("DEMO_INTERACTIONS_PER_DAY", "400"))
MODEL = os.environ.get("DEMO_MODEL", "tiny")
#: A real 135M-parameter model on 2 CPU cores: fewer, shorter steps than the tiny model's defaults.
SMOLLM2 = {
    "CL_MODEL__BASE_URI": "builtin:smollm2",
    "CL_MODEL__IMITATE_AGENT_STEPS": "12",
    "CL_MODEL__IMITATE_AGENT_LEARNING_RATE": "1e-4",
    "CL_MODEL__LORA__ENABLED": "true",
    "CL_MODEL__LORA__RANK": "16",
    "CL_TRAINER__LEARNING_RATE": "1e-4",
    "CL_TRAINER__MAX_STEPS": "4",
    "CL_TRAINER__PROMPTS_PER_STEP": "2",
    "CL_TRAINER__SAMPLES_PER_PROMPT": "4",
    "CL_TRAINER__MAX_COMPLETION_TOKENS": "56",  # SmolLM2 writes a reference tool call in 31-50 tokens
    "CL_EVALUATION__MAX_PROMPTS": "32",
}
T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", flush=True)


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(DEMO / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "CL_ENV": "local",
            "CL_STORAGE__ROOT": f"file://{DEMO / 'data'}",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    if MODEL == "smollm2":
        env.update({k: env.get(k, v) for k, v in SMOLLM2.items()})
    return env


def run(args: list[str], log_name: str) -> None:
    log_path = DEMO / "logs" / log_name
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        result = subprocess.run(args, env=environment(), stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    if result.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-40:]
        print("\n".join(tail), file=sys.stderr)
        raise SystemExit(f"demo step failed ({' '.join(args[:4])}); full log: {log_path}")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def current(partition: Path) -> Path:
    pointer = read_json(partition / "_CURRENT.json")
    return partition / "_runs" / pointer["run_id"]


def latest_run(runs: Path, before: set[str]) -> Path | None:
    new = [p for p in runs.iterdir() if p.name not in before] if runs.exists() else []
    return max(new, key=lambda p: p.stat().st_mtime) if new else None


def production_version(registry: Path) -> str:
    revisions = sorted((registry / "aliases" / "production").glob("rev-*.json"))
    return read_json(revisions[-1])["version"] if revisions else "none"


def report_day(day: date, run_dir: Path | None) -> None:
    data = DEMO / "data" / "data"
    ingest = read_json(current(data / "curated" / f"dt={day}") / "manifest.json")["report"]
    reward = read_json(data / "reward" / f"dt={day}" / "_CURRENT.json")
    print(f"\n=== {day} ===")
    print(
        f"  ingest   read {ingest['read']}, accepted {ingest['accepted']}, duplicates {ingest['duplicates']}, "
        f"quarantined {ingest['quarantined']}, late feedback joined {ingest['feedback_joined']}, "
        f"redactions {ingest['redactions']}"
    )
    print(f"  dataset  {reward['rows']} reward rows this day {reward['report']['by_split']}")
    if run_dir is None or not (run_dir / "train" / "result.json").exists():
        print("  training skipped (see the continuous_training log)")
    else:
        train = read_json(run_dir / "train" / "result.json")
        evaluation = read_json(run_dir / "eval" / "result.json")
        gate = read_json(run_dir / "gate.json")
        manifest = read_json(Path(train_dataset_manifest(run_dir)))
        print(f"  window   dataset {manifest['dataset_id']}: {manifest['counts']}")
        m = train["metrics"]
        loss = train["history"][-1].get("loss", float("nan")) if train["history"] else float("nan")
        print(
            f"  train    {train['steps']} GRPO steps from {train['base_model_version']}: "
            f"reward {m['reward_first']:.3f} -> {m['reward_last']:.3f}, last loss {loss:.4f}"
        )
        print(
            f"  eval     candidate {evaluation['mean_reward']['candidate']:.3f} vs production "
            f"{evaluation['mean_reward']['production']:.3f} on {evaluation['prompts']} held-out prompts"
        )
        print(f"  gate     {'PROMOTE' if gate['promote'] else 'REJECT'}: {' '.join(gate['reasons'])}")
        report = run_dir / "report" / "report.html"
        if report.exists():
            print(f"  report   {report}")
    print(f"  production model: {production_version(DEMO / 'data' / 'registry')}")


def train_dataset_manifest(run_dir: Path) -> str:
    spec = read_json(run_dir / "specs" / "train.json")
    return spec["dataset"]["manifest_uri"].removeprefix("file://")


def main() -> int:
    if MODEL not in ("tiny", "smollm2"):
        raise SystemExit(f"DEMO_MODEL={MODEL!r}: allowed are tiny (default) and smollm2")
    if DEMO.exists():
        shutil.rmtree(DEMO)
    say(
        f"day-0 model: {'SmolLM2-135M-Instruct (builtin:smollm2), LoRA' if MODEL == 'smollm2' else 'tiny, built'}"
    )
    DEMO.mkdir()
    say("setting up Airflow (SQLite metadata database)")
    run(["airflow", "db", "migrate"], "airflow-db-migrate.log")
    say(f"generating {DAYS} days of synthetic agent logs ({PER_DAY} interactions a day) with late feedback")
    run(
        [sys.executable, "-m", "continuous_learning", "generate-logs", "--start", START.isoformat(),
         "--days", str(DAYS), "--per-day", str(PER_DAY), "--out", f"file://{DEMO / 'data'}"],
        "generate-logs.log",
    )  # fmt: skip
    runs = DEMO / "data" / "runs"
    for offset in range(DAYS):
        day = START + timedelta(days=offset)
        say(f"{day}: interaction_ingest")
        run(
            ["airflow", "dags", "test", "interaction_ingest", day.isoformat()],
            f"interaction_ingest-{day}.log",
        )
        before = {p.name for p in runs.iterdir()} if runs.exists() else set()
        say(f"{day}: continuous_training (window ending {day}; Ray head, train, evaluate, gate, teardown)")
        run_date = f"{day + timedelta(days=1)}T06:00:00+00:00"
        run(["airflow", "dags", "test", "continuous_training", run_date], f"continuous_training-{day}.log")
        report_day(day, latest_run(runs, before))
    say("done")
    history = sorted((DEMO / "data" / "registry" / "aliases" / "production").glob("rev-*.json"))
    print("\nProduction history:")
    for revision in history:
        entry = read_json(revision)
        print(f"  rev {entry['revision']}: {entry['version']}  ({entry['reason'][:110]})")
    print(f"\nArtifacts: {DEMO / 'data'} (raw, feedback, data/curated, data/quarantine, data/reward, "
          f"data/datasets, runs, registry)\nLogs: {DEMO / 'logs'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
