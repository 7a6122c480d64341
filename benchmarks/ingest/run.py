"""Ingest benchmark: our ingest + dataset build against the raw-parse floor and a pandas peer.

Usage: .venv/bin/python benchmarks/ingest/run.py [--records 1000000] [--scale 10] [--workdir /tmp/cl-bench]
       [--before REV]

In one run, on the same generated day (no malformed lines, since neither pyarrow's nor pandas' JSON
reader survives one; duplicates and PII are there):
- floor: pyarrow.json parses every file, nothing else;
- peer: a straightforward pandas implementation (read, validate required columns, drop duplicates,
  regex redaction, write parquet);
- ours: `ingest_day` + `build_day_partition`;
- ours at `--scale` times the input, for peak memory.
Each runs in its own process; wall time, CPU time and peak RSS come from /usr/bin/time, and the CPU
the rest of the machine used meanwhile from /proc/stat (other jobs change the ratios). Writes the
tables of RESULTS.md here; notes below its NOTES marker are kept.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOTES = "<!-- notes: kept when run.py rewrites the tables above -->"


def write_results(path: Path, lines: list[str]) -> None:
    """Write the tables, keeping what stands below the NOTES marker, and print them."""
    previous = path.read_text() if path.exists() else ""
    notes = previous[previous.index(NOTES) :] if NOTES in previous else NOTES + "\n"
    path.write_text("\n".join(lines) + "\n" + notes)
    print("\n".join(lines))


FLOOR = """
import glob, sys
import pyarrow as pa, pyarrow.json as pj
rows = 0
for path in sorted(glob.glob(sys.argv[1] + "/raw/dt=*/*")):
    rows += pj.read_json(pa.input_stream(path, compression="detect"),
                         read_options=pj.ReadOptions(block_size=1 << 24)).num_rows
print(rows)
"""

PEER = """
import glob, json, sys
import pandas as pd
frames = [pd.read_json(p, lines=True, compression="infer", dtype=False) for p in sorted(glob.glob(sys.argv[1] + "/raw/dt=*/*"))]
df = pd.concat(frames, ignore_index=True)
required = ["schema_version", "interaction_id", "timestamp", "agent", "messages"]
df = df[df[required].notna().all(axis=1) & (df["schema_version"] == 1)]
df = df.drop_duplicates(subset="interaction_id", keep="first")
text = df["messages"].apply(json.dumps)
for pattern, label in [(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}", "<EMAIL>"),
                       (r"(?:\\d[ -]?){12,18}\\d", "<CREDIT_CARD>"),
                       (r"\\+?\\(?\\d[\\d\\s().-]{7,}\\d", "<PHONE>")]:
    text = text.str.replace(pattern, label, regex=True)
df = df.assign(messages_json=text).drop(columns=["messages", "tools", "feedback", "outcome"], errors="ignore")
df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
df.astype({c: "string" for c in df.columns if df[c].dtype == object}).to_parquet(sys.argv[1] + "/peer.parquet")
print(len(df))
"""

OURS = """
import sys
from datetime import date
from continuous_learning.data.ingest import ingest_day
from continuous_learning.data.reward_dataset import build_day_partition
root = "file://" + sys.argv[1]
day = date.fromisoformat(sys.argv[2])
report = ingest_day(day, root + "/raw", root + "/data", root + "/feedback")
build_day_partition(root + "/data", day, 0.05, 0.05)
print(report.read)
"""


def _busy_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot (all cores)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    seconds: float
    rss_mib: float
    records: int
    cpu_seconds: float  # of the measured process and its children
    others: float  # cores the rest of the machine kept busy meanwhile, on average

    @property
    def rate(self) -> float:
        return self.records / self.seconds


def timed(code: str, *args: str, pythonpath: str | None = None) -> Run:
    """Wall time, peak RSS, records and CPU of `python -c code args` in its own process (with
    ``pythonpath`` first on its path, if given)."""
    env = dict(os.environ, PYTHONPATH=pythonpath) if pythonpath else None
    busy = _busy_seconds()
    out = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M %U %S", sys.executable, "-c", code, *args],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    busy = _busy_seconds() - busy
    seconds, kib, user, system = out.stderr.strip().splitlines()[-1].split()
    cpu = float(user) + float(system)
    others = max(0.0, busy - cpu) / max(float(seconds), 1e-9)
    return Run(float(seconds), int(kib) / 1024, int(out.stdout.strip().splitlines()[-1]), cpu, others)


def generate(workdir: Path, records: int) -> None:
    from datetime import date

    from continuous_learning.data.synthetic import generate_day

    shutil.rmtree(workdir, ignore_errors=True)
    started = time.monotonic()
    chunk = 1_000_000  # bounded memory while generating: one chunk of files at a time
    for start in range(0, records, chunk):
        count = min(chunk, records - start)
        generate_day(f"file://{workdir}", date(2026, 11, 1), count, seed=1, malformed_share=0.0,
                     start_index=start, file_prefix=f"part-{start // chunk:03d}")  # fmt: skip
    size = sum(p.stat().st_size for p in workdir.rglob("*") if p.is_file()) / 2**20
    print(
        f"  generated {records:,} interactions ({size:,.0f} MiB) in {time.monotonic() - started:.0f} s",
        flush=True,
    )


def _export_plugins(rev: str, workdir: Path) -> str:
    """plugins/ as of git revision ``rev``, written under ``workdir``; the path to put first."""
    target = workdir / "before"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    root = HERE.parent.parent
    archive = subprocess.run(["git", "archive", rev, "plugins"], cwd=root, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return str(target / "plugins")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cl-bench"))
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md", help="the file to write")
    parser.add_argument(
        "--before", metavar="REV", help="also run ours with plugins/ of this git revision, right after ours"
    )
    args = parser.parse_args()
    one = args.workdir / "x1"
    print(f"generating the 1x day ({args.records:,} interactions)", flush=True)
    generate(one, args.records)
    results: dict[str, Run] = {}
    for name, code, extra in [("floor: pyarrow.json parse", FLOOR, []), ("peer: pandas", PEER, []),
                              ("ours: ingest + dataset build", OURS, ["2026-11-01"])]:  # fmt: skip
        print(f"running {name}", flush=True)
        results[name] = timed(code, str(one), *extra)
        print(f"  {results[name]}", flush=True)
    if args.before:
        shutil.rmtree(one / "data", ignore_errors=True)  # ingest again from scratch, not onto ours' output
        name = f"ours before ({args.before})"
        print(f"running {name}", flush=True)
        results[name] = timed(
            OURS, str(one), "2026-11-01", pythonpath=_export_plugins(args.before, args.workdir)
        )
        print(f"  {results[name]}", flush=True)
    shutil.rmtree(one, ignore_errors=True)
    big = args.workdir / f"x{args.scale}"
    print(f"generating the {args.scale}x day", flush=True)
    generate(big, args.records * args.scale)
    print(f"running ours at {args.scale}x", flush=True)
    results[f"ours at {args.scale}x input"] = ours_big = timed(OURS, str(big), "2026-11-01")
    print(f"  {ours_big}", flush=True)
    shutil.rmtree(big, ignore_errors=True)

    floor_rate = results["floor: pyarrow.json parse"].rate
    peer_rate = results["peer: pandas"].rate
    ours = results["ours: ingest + dataset build"]
    lines = [
        "# Ingest benchmark",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}.",
        f"Command: `.venv/bin/python benchmarks/ingest/run.py --records {args.records} --scale {args.scale}`"
        f" ({time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC).",
        "Input: one synthetic day, 3 files (one gzip), no malformed lines (the floor and the peer cannot read one).",
        "",
        "| implementation | records | seconds | records/s | CPU seconds | peak RSS MiB | other jobs, cores |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {n} | {r.records:,} | {r.seconds:.1f} | {r.rate:,.0f} | {r.cpu_seconds:.1f} | {r.rss_mib:,.0f} | {r.others:.2f} |"
            for n, r in results.items()
        ],
        "",
        "| goal | measured | met |",
        "|---|---:|:---:|",
        f"| throughput >= 0.5x the raw parse | {ours.rate / floor_rate:.2f}x | {'yes' if ours.rate / floor_rate >= 0.5 else 'no'} |",
        f"| throughput >= 5x the pandas peer | {ours.rate / peer_rate:.2f}x | {'yes' if ours.rate / peer_rate >= 5 else 'no'} |",
        f"| peak RSS at {args.scale}x within 1.5x of 1x | {ours_big.rss_mib / ours.rss_mib:.2f}x | {'yes' if ours_big.rss_mib / ours.rss_mib <= 1.5 else 'no'} |",
        "",
        '"other jobs": the CPU the rest of the machine used during each run (from /proc/stat, minus the',
        "run's own), in cores out of the machine's; the ratios above hold only for these conditions.",
        "",
    ]
    write_results(args.results, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
