"""The three-day loop's data, made on CPU through the product's CLI (generate-logs, ingest, build-dataset).

    python benchmarks/gpu/prepare_loop.py --home .bundle/loop --world production

Writes the local environment's storage under ``<home>/.cl-data`` (``CL_HOME=<home>``): raw logs and late
feedback for day 0 (the day v0 imitates) and the training days, their curated partitions and reward
partitions. ``loop.py`` on the GPU host reads the reward partitions with the same ``CL_HOME``; raw and
curated data are left out of what travels (``--prune``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

CLI = [sys.executable, "-m", "continuous_learning"]


def run(args: list[str], env: dict[str, str]) -> dict[str, object]:
    started = time.monotonic()
    out = subprocess.run([*CLI, *args], env=env, check=True, capture_output=True, text=True).stdout
    counts = json.loads(out.strip().splitlines()[-1])
    print(f"{args[0]:>14} {args[args.index('--date') + 1] if '--date' in args else '':<10} "
          f"{time.monotonic() - started:6.1f}s {json.dumps(counts)[:160]}", flush=True)  # fmt: skip
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", default=".bundle/loop")
    ap.add_argument("--start", default="2026-11-01", help="day 0")
    ap.add_argument("--days", type=int, default=3, help="training days after day 0")
    ap.add_argument("--per-day", type=int, default=300)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--world", default=None, help="generate-logs --world (default: the CLI's)")
    ap.add_argument("--prune", action="store_true", help="keep only the reward partitions")
    args = ap.parse_args()
    home = Path(args.home).resolve()
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "CL_HOME": str(home), "CL_ENV": "local",
           "PYTHONPATH": f"{root / 'plugins'}:{root / 'trainer'}"}  # fmt: skip
    data = f"file://{home / '.cl-data'}"
    generate = ["generate-logs", "--start", args.start, "--days", str(args.days + 1), "--out", data,
                "--per-day", str(args.per_day), "--seed", str(args.seed)]  # fmt: skip
    if args.world:
        generate += ["--world", args.world]
    run(generate, env)
    start = date.fromisoformat(args.start)
    for i in range(args.days + 1):
        day = (start + timedelta(days=i)).isoformat()
        run(["ingest", "--date", day], env)
        run(["build-dataset", "--date", day], env)
    if args.prune:
        for name in ("raw", "feedback", "curated", "quarantine"):
            shutil.rmtree(home / ".cl-data" / name, ignore_errors=True)
    size = sum(f.stat().st_size for f in home.rglob("*") if f.is_file())
    print(f"{home}: {size / 1e6:.1f} MB", flush=True)


if __name__ == "__main__":
    main()
