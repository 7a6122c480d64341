"""World benchmark: how much headroom the synthetic production world leaves for learning from feedback.

Usage: .venv/bin/python benchmarks/world/run.py [--days 3] [--per-day 400] [--seed 0] [--workdir DIR] [--write]

For each world (``production``, and ``default`` as the baseline), in one run:
1. ``generate_logs`` writes ``--days`` days of raw logs and late feedback (what
   ``python -m continuous_learning generate-logs --world ...`` writes);
2. the real ingest (``ingest_day``) and dataset builder (``build_day_partition``, then ``assemble_window``
   over the days) turn them into the reward dataset, with the local settings' split shares;
3. every held-out (test) prompt is scored with the project's reward (``rewards.score_response``) for
   - imitation: the agent's logged answer (what a model that imitates the logs exactly writes; the
     same answer the imitation warm start trains on, ``sft.logged_answer``), and
   - perfect: the reference itself (the correction, or the answer that drew positive feedback),
   in each tool-call format the reward parses (hermes, llama3_json, mistral);
4. per slice: agent, reference source, the logged answer's mistake (judged against the reference) and
   calls in the reference; and the share of interactions with feedback.
The last line of standard output is the whole result as JSON; ``--write`` rewrites the tables of
``RESULTS.md`` (notes below its NOTES marker are kept).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import tempfile
import time
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
NOTES = "<!-- notes: kept when run.py rewrites the tables above -->"
START = date(2026, 11, 2)
FORMATS = ("hermes", "llama3_json", "mistral")


def mistake_of(logged: dict[str, Any], reference: dict[str, Any]) -> str:
    """How the logged answer differs from the reference: none, missing_call, extra_call, wrong_tool,
    order or arguments (the first that applies)."""
    got, want = logged.get("tool_calls") or [], reference.get("tool_calls") or []
    if got == want:
        return "none"
    if len(got) < len(want):
        return "missing_call"
    if len(got) > len(want):
        return "extra_call"
    names, wanted_names = [c["name"] for c in got], [c["name"] for c in want]
    if sorted(names) != sorted(wanted_names):
        return "wrong_tool"
    return "order" if names != wanted_names else "arguments"


def curated_feedback(data_uri: str, days: list[date]) -> dict[str, int]:
    from continuous_learning import storage

    counts = {"interactions": 0, "with_feedback": 0, "with_correction": 0, "positive": 0, "negative": 0}
    for day in days:
        files = storage.partition_files(storage.join(data_uri, "curated", f"dt={day.isoformat()}"))
        data = storage.read_bytes(files["interactions.parquet"])
        table = pq.read_table(io.BytesIO(data), columns=["feedback_score", "correction_json"])
        for score, correction in zip(
            table.column("feedback_score").to_pylist(),
            table.column("correction_json").to_pylist(),
            strict=True,
        ):
            counts["interactions"] += 1
            counts["with_feedback"] += score is not None or correction is not None
            counts["with_correction"] += correction is not None
            counts["positive"] += score is not None and score > 0
            counts["negative"] += score is not None and score < 0
    return counts


def measure_world(world: str, days: int, per_day: int, seed: int, workdir: Path) -> dict[str, Any]:
    from continuous_learning import storage
    from continuous_learning.config import load_settings
    from continuous_learning.data.ingest import ingest_day
    from continuous_learning.data.reward_dataset import assemble_window, build_day_partition
    from continuous_learning.data.synthetic import generate_logs
    from continuous_learning.models.tool_calls import format_calls
    from continuous_learning_trainer.rewards import format_reference, score_response
    from continuous_learning_trainer.sft import logged_answer

    settings = load_settings("local")
    root = f"file://{workdir / world}"
    began = time.perf_counter()
    generate_logs(root, START, days, per_day, seed=seed, world=world)
    day_list = [START + timedelta(days=offset) for offset in range(days)]
    for day in day_list:
        ingest_day(day, raw_uri=f"{root}/raw", out_uri=f"{root}/data", feedback_uri=f"{root}/feedback")
        build_day_partition(
            f"{root}/data", day, settings.dataset.validation_share, settings.dataset.test_share
        )
    dataset = assemble_window(f"{root}/data", day_list[-1], days)
    pipeline_s = time.perf_counter() - began
    rows = pq.read_table(io.BytesIO(storage.read_bytes(dataset.split_uri("test")))).to_pylist()
    scores: dict[str, dict[str, list[float]]] = {f: {"imitation": [], "perfect": []} for f in FORMATS}
    slices: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        reference = json.loads(row["reward_model"]["ground_truth"])
        source = row["extra_info"]["reference_source"]
        tools = json.loads(row["extra_info"]["tools_json"]) if row["extra_info"]["tools_json"] else None
        logged = logged_answer(reference, source)
        for fmt in FORMATS:
            imitation_text = format_calls(logged["tool_calls"], fmt) if logged["tool_calls"] else ""
            imitation = score_response(imitation_text, reference, tools, tool_call_format=fmt).total
            perfect = score_response(format_reference(reference, fmt), reference, tools, tool_call_format=fmt)
            scores[fmt]["imitation"].append(imitation)
            scores[fmt]["perfect"].append(perfect.total)
            if fmt == "hermes":
                calls = len(reference.get("tool_calls") or [])
                for name, value in (
                    ("agent", row["extra_info"]["agent"]),
                    ("reference", source),
                    ("mistake", mistake_of(logged, reference)),
                    ("calls", f"{calls} call{'s' if calls != 1 else ''}"),
                ):
                    slices[name][value].append(imitation)
    feedback = curated_feedback(f"{root}/data", day_list)
    return {
        "world": world,
        "dataset_counts": dataset.counts,
        "test_prompts": len(rows),
        "pipeline_s": round(pipeline_s, 1),
        "imitation": {f: _mean(s["imitation"]) for f, s in scores.items()},
        "perfect": {f: _mean(s["perfect"]) for f, s in scores.items()},
        "slices": {
            name: {value: {"n": len(v), "imitation": _mean(v)} for value, v in sorted(by.items())}
            for name, by in slices.items()
        },
        "feedback": feedback,
        "feedback_share": round(feedback["with_feedback"] / max(feedback["interactions"], 1), 3),
        "correction_share": round(feedback["with_correction"] / max(feedback["interactions"], 1), 3),
        "test_correction_share": round(
            sum(r["extra_info"]["reference_source"] == "correction" for r in rows) / max(len(rows), 1), 3
        ),
    }


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 4) if values else float("nan")


def tables(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    by_world = {r["world"]: r for r in results}
    production, default = by_world["production"], by_world.get("default")
    lines = [
        "# World benchmark: headroom for learning from feedback",
        "",
        f"Command: `.venv/bin/python benchmarks/world/run.py --days {args.days} --per-day {args.per_day} "
        f"--seed {args.seed} --write` ({platform.machine()}, Python {platform.python_version()}).",
        "",
        "Held-out (test split) prompts of the reward dataset the real ingest and dataset builder make from "
        f"{args.days} generated days of {args.per_day} interactions; the project's reward with its default "
        "weights. *Imitation*: the agent's logged answer; *perfect*: the reference.",
        "",
        "| world | test prompts | imitation (hermes / llama3_json / mistral) | perfect | "
        "interactions with feedback | with a correction | test prompts from corrections |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in [production, *([default] if default else [])]:
        imitation = " / ".join(f"{r['imitation'][f]:.3f}" for f in FORMATS)
        lines.append(
            f"| {r['world']} | {r['test_prompts']} | {imitation} | {r['perfect']['hermes']:.3f} | "
            f"{r['feedback_share']:.1%} | {r['correction_share']:.1%} | {r['test_correction_share']:.1%} |"
        )
    if default:
        gap = (1 - production["imitation"]["hermes"]) / max(1 - default["imitation"]["hermes"], 1e-9)
        lines += [
            "",
            f"Headroom (perfect - imitation) of the production world: {gap:.1f}x the default world's.",
        ]
    lines += ["", "Production world, imitation by slice (hermes):", ""]
    for name, by in production["slices"].items():
        lines += [f"| {name} | prompts | imitation |", "|---|---:|---:|"]
        lines += [f"| {value} | {s['n']} | {s['imitation']:.3f} |" for value, s in by.items()]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--per-day", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="keep the generated data here (default: a temp folder)")
    parser.add_argument("--worlds", default="production,default", help="comma-separated; production first")
    parser.add_argument("--write", action="store_true", help="rewrite RESULTS.md's tables")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cl-world-") as tmp:
        workdir = args.workdir or Path(tmp)
        results = [
            measure_world(world, args.days, args.per_day, args.seed, workdir)
            for world in args.worlds.split(",")
        ]
    if args.write:
        path = HERE / "RESULTS.md"
        old = path.read_text() if path.exists() else ""
        notes = old[old.index(NOTES) :] if NOTES in old else NOTES + "\n"
        path.write_text(tables(results, args) + "\n" + notes)
    print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
