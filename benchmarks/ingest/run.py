"""Ingest benchmark: our ingest + dataset build against the raw-parse floor and a pandas peer.

Usage: .venv/bin/python benchmarks/ingest/run.py [--records 1000000] [--scale 10] [--workdir /tmp/cl-bench]

In one run, on the same generated day (no malformed lines, since neither pyarrow's nor pandas' JSON
reader survives one; duplicates and PII are there):
- floor: pyarrow.json parses every file, nothing else;
- peer: a straightforward pandas implementation (read, validate required columns, drop duplicates,
  regex redaction, write parquet);
- ours: `ingest_day` + `build_day_partition`;
- ours at `--scale` times the input, for peak memory.
Each runs in its own process; wall time and peak RSS come from /usr/bin/time. Writes RESULTS.md here.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

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


def timed(code: str, *args: str) -> tuple[float, float, int]:
    """(seconds, peak RSS MiB, records) of `python -c code args` in its own process."""
    out = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M", sys.executable, "-c", code, *args],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    seconds, kib = out.stderr.strip().splitlines()[-1].split()
    return float(seconds), int(kib) / 1024, int(out.stdout.strip().splitlines()[-1])


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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cl-bench"))
    args = parser.parse_args()
    one = args.workdir / "x1"
    print(f"generating the 1x day ({args.records:,} interactions)", flush=True)
    generate(one, args.records)
    results = {}
    for name, code, extra in [("floor: pyarrow.json parse", FLOOR, []), ("peer: pandas", PEER, []),
                              ("ours: ingest + dataset build", OURS, ["2026-11-01"])]:  # fmt: skip
        print(f"running {name}", flush=True)
        results[name] = timed(code, str(one), *extra)
        print(f"  {results[name][0]:.1f} s, {results[name][1]:.0f} MiB", flush=True)
    shutil.rmtree(one, ignore_errors=True)
    big = args.workdir / f"x{args.scale}"
    print(f"generating the {args.scale}x day", flush=True)
    generate(big, args.records * args.scale)
    print(f"running ours at {args.scale}x", flush=True)
    ours_big = timed(OURS, str(big), "2026-11-01")
    print(f"  {ours_big[0]:.1f} s, {ours_big[1]:.0f} MiB", flush=True)
    shutil.rmtree(big, ignore_errors=True)

    floor_rate = results["floor: pyarrow.json parse"][2] / results["floor: pyarrow.json parse"][0]
    peer_rate = results["peer: pandas"][2] / results["peer: pandas"][0]
    ours = results["ours: ingest + dataset build"]
    ours_rate = ours[2] / ours[0]
    lines = [
        "# Ingest benchmark",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}.",
        f"Command: `.venv/bin/python benchmarks/ingest/run.py --records {args.records} --scale {args.scale}`.",
        "Input: one synthetic day, 3 files (one gzip), no malformed lines (the floor and the peer cannot read one).",
        "",
        "| implementation | records | seconds | records/s | peak RSS MiB |",
        "|---|---:|---:|---:|---:|",
        *[f"| {n} | {r[2]:,} | {r[0]:.1f} | {r[2] / r[0]:,.0f} | {r[1]:,.0f} |" for n, r in results.items()],
        f"| ours at {args.scale}x input | {ours_big[2]:,} | {ours_big[0]:.1f} | {ours_big[2] / ours_big[0]:,.0f} | {ours_big[1]:,.0f} |",
        "",
        "| goal | measured | met |",
        "|---|---:|:---:|",
        f"| throughput >= 0.5x the raw parse | {ours_rate / floor_rate:.2f}x | {'yes' if ours_rate / floor_rate >= 0.5 else 'no'} |",
        f"| throughput >= 5x the pandas peer | {ours_rate / peer_rate:.2f}x | {'yes' if ours_rate / peer_rate >= 5 else 'no'} |",
        f"| peak RSS at {args.scale}x within 1.5x of 1x | {ours_big[1] / ours[1]:.2f}x | {'yes' if ours_big[1] / ours[1] <= 1.5 else 'no'} |",
        "",
    ]
    (HERE / "RESULTS.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
