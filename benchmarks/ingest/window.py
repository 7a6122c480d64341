"""Window benchmark: peak memory of assembling a lookback window of reward partitions, against one day.

Usage: .venv/bin/python benchmarks/ingest/window.py [--records 100000] [--days 30] [--old-days 3]
       [--workdir /tmp/cl-window-bench] [--results benchmarks/ingest/WINDOW.md]

One generated day of ``--records`` interactions goes through the real ``ingest_day`` and
``build_day_partition``; its reward partition is then committed under ``--days`` consecutive days with the
ids renamed per day, except one in 20 that keeps its id (the same interaction again: deduplicated, the
latest day's copy wins). Each assembly runs in its own process under /usr/bin/time (wall, CPU, peak RSS):
- ours (``assemble_window``, bucketed) over 1 day and over ``--days`` days;
- the in-memory assembly it replaced (every row a dict) over 1 day and ``--old-days`` days, for its growth.
Writes the results file (tables above its notes marker are rewritten, notes below kept).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.ingest.run import Run, timed, write_results

HERE = Path(__file__).resolve().parent
START = "2026-11-01"

SETUP = """
import sys
from datetime import date, timedelta
import pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
from pathlib import Path
from continuous_learning import storage
from continuous_learning.data.ingest import ingest_day
from continuous_learning.data.reward_dataset import VERL_SCHEMA, build_day_partition
from continuous_learning.data.synthetic import generate_day
work, records, days = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
root, start = "file://" + work, date.fromisoformat(sys.argv[4])
generate_day(root + "/gen", start, records, seed=1, malformed_share=0.0)
ingest_day(start, root + "/gen/raw", root + "/gen/data", root + "/gen/feedback")
build_day_partition(root + "/gen/data", start, 0.05, 0.05)
files = storage.partition_files(storage.join(root, "gen/data/reward", f"dt={start}"))
base = pq.read_table(storage.LocalStore.path(files["prompts.parquet"]))
info = base.column("extra_info").combine_chunks()
ids = info.field("interaction_id")
keep = pa.array([i % 20 == 0 for i in range(len(ids))])
for offset in range(days):
    day = start + timedelta(days=offset)
    renamed = pc.if_else(keep, ids, pc.binary_join_element_wise(ids, f"d{offset}", "-"))
    arrays = [renamed if f.name == "interaction_id" else info.field(f.name) for f in info.type]
    extra = pa.StructArray.from_arrays(arrays, fields=list(info.type))
    table = base.set_column(base.schema.get_field_index("extra_info"), VERL_SCHEMA.field("extra_info"), extra)
    path = f"{work}/day.parquet"
    pq.write_table(table, path, compression="zstd")
    storage.commit_partition_files(storage.join(root, "data/reward", f"dt={day}"), {"prompts.parquet": Path(path)},
                                   {"day": str(day), "rows": table.num_rows})
print(base.num_rows)
"""

OURS = """
import sys
from datetime import date
from continuous_learning.data.reward_dataset import assemble_window
dataset = assemble_window("file://" + sys.argv[1] + "/data", date.fromisoformat(sys.argv[2]), int(sys.argv[3]))
print(sum(dataset.counts.values()))
"""

# The assembly before the bucketed one (commit 9651864), verbatim in what it holds: every row of the window as a dict.
OLD = """
import io, sys
from datetime import date, timedelta
import pyarrow as pa, pyarrow.parquet as pq
from continuous_learning import storage
from continuous_learning.data.reward_dataset import SPLITS, VERL_SCHEMA
data, end, lookback = "file://" + sys.argv[1] + "/data", date.fromisoformat(sys.argv[2]), int(sys.argv[3])
latest = {}
for offset in range(lookback - 1, -1, -1):
    prefix = storage.join(data, "reward", f"dt={end - timedelta(days=offset)}")
    raw = storage.read_bytes(storage.partition_files(prefix)["prompts.parquet"])
    for row in pq.read_table(io.BytesIO(raw)).to_pylist():
        latest[row["extra_info"]["interaction_id"]] = row
by_split = {s: [] for s in SPLITS}
for key in sorted(latest):
    by_split[latest[key]["extra_info"]["split"]].append(latest[key])
for split, rows in by_split.items():
    for index, row in enumerate(rows):
        row["extra_info"]["index"] = index
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=VERL_SCHEMA), sink, compression="zstd")
    storage.write_bytes(storage.join(data, "old", f"{split}.parquet"), sink.getvalue())
print(len(latest))
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000, help="interactions of the generated day")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--old-days", type=int, default=3, help="days for the in-memory assembly (it grows)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cl-window-bench"))
    parser.add_argument("--results", type=Path, default=HERE / "WINDOW.md")
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    print("setting up", flush=True)
    setup = timed(SETUP, str(args.workdir), str(args.records), str(args.days), START)
    print(f"  {setup.records:,} reward rows a day, {setup.seconds:.0f} s", flush=True)
    from datetime import date, timedelta

    end = (date.fromisoformat(START) + timedelta(days=args.days - 1)).isoformat()
    runs: dict[str, tuple[int, Run]] = {}
    for name, code, days in [
        ("ours (buckets), 1 day", OURS, 1),
        (f"ours (buckets), {args.days} days", OURS, args.days),
        ("in memory (before), 1 day", OLD, 1),
        (f"in memory (before), {args.old_days} days", OLD, args.old_days),
    ]:
        print(f"running {name}", flush=True)
        runs[name] = (days, timed(code, str(args.workdir), end, str(days)))
        print(f"  {runs[name][1]}", flush=True)
    shutil.rmtree(args.workdir, ignore_errors=True)
    ours_one = runs["ours (buckets), 1 day"][1]
    ours_all = runs[f"ours (buckets), {args.days} days"][1]
    old_one = runs["in memory (before), 1 day"][1]
    lines = [
        "# Window assembly benchmark",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}.",
        f"Command: `.venv/bin/python benchmarks/ingest/window.py --records {args.records} --days {args.days}"
        f" --old-days {args.old_days}` ({time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC).",
        f"Input: one generated day of {args.records:,} interactions through ingest and the reward build"
        f" ({setup.records:,} reward rows), committed as {args.days} days (ids renamed per day; 1 in 20 kept).",
        "",
        "| assembly | days | rows out | seconds | CPU seconds | peak RSS MiB | RSS vs its 1 day | other jobs, cores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {name} | {days} | {run.records:,} | {run.seconds:.1f} | {run.cpu_seconds:.1f} | {run.rss_mib:,.0f}"
            f" | {run.rss_mib / (ours_one if name.startswith('ours') else old_one).rss_mib:.2f}x | {run.others:.2f} |"
            for name, (days, run) in runs.items()
        ],
        "",
        "| goal | measured | met |",
        "|---|---:|:---:|",
        f"| {args.days} days within 1.5x the peak RSS of 1 day | {ours_all.rss_mib / ours_one.rss_mib:.2f}x |"
        f" {'yes' if ours_all.rss_mib / ours_one.rss_mib <= 1.5 else 'no'} |",
        "",
    ]
    write_results(args.results, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
