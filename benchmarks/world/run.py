"""World benchmark: how much headroom the synthetic production world leaves for learning from feedback.

Usage: .venv/bin/python benchmarks/world/run.py [--days 3] [--per-day 400] [--seeds 0,1,2] [--workdir DIR] [--write]

For each world (``production``, and ``default`` as the baseline) and seed, in one run:
1. ``generate_logs`` writes ``--days`` days of raw logs and late feedback (what
   ``python -m continuous_learning generate-logs --world ...`` writes);
2. the real ingest (``ingest_day``) and dataset builder (``build_day_partition``, then ``assemble_window``
   over the days) turn them into the reward dataset, with the local settings' split shares;
3. every held-out (test) prompt is scored with the project's reward (``rewards.score_response``) for
   - imitation: the agent's logged answer (what a model that imitates the logs exactly writes; the
     same answer the imitation warm start trains on, ``sft.logged_answer``),
   - usual: the agent's most likely answer to that request (what a perfect imitator of the agent
     writes, whatever it happened to answer that time: the record's ``usual_answer`` in the production
     world; in the default world, whose mistakes are random and spread out, the right answer), and
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
import os
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


def usual_answers(raw_uri: str) -> dict[str, list[dict[str, Any]]]:
    """interaction id -> the agent's usual answer, where the world wrote one (production)."""
    import gzip

    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(Path(raw_uri.removeprefix("file://")).rglob("*.jsonl*")):
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        for line in data.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # the world's planted malformed lines
            if isinstance(record, dict) and "usual_answer" in record:
                found[record["interaction_id"]] = record["usual_answer"]
    return found


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


def measure_world(
    world: str, days: int, per_day: int, seed: int, workdir: Path, reward_rates: bool = True
) -> dict[str, Any]:
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
    usual_of = usual_answers(f"{root}/raw")
    scores: dict[str, dict[str, list[float]]] = {
        f: {"imitation": [], "usual": [], "perfect": []} for f in FORMATS
    }
    slices: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        reference = json.loads(row["reward_model"]["ground_truth"])
        source = row["extra_info"]["reference_source"]
        tools = json.loads(row["extra_info"]["tools_json"]) if row["extra_info"]["tools_json"] else None
        logged = logged_answer(reference, source)
        key = row["extra_info"]["interaction_id"]
        # The default world's mistakes are random and spread out: its agent's usual answer is the right one.
        usual = reference["tool_calls"] if world == "default" else usual_of.get(key, logged["tool_calls"])
        for fmt in FORMATS:
            imitation_text = format_calls(logged["tool_calls"], fmt) if logged["tool_calls"] else ""
            imitation = score_response(imitation_text, reference, tools, tool_call_format=fmt).total
            usual_text = format_calls(usual, fmt) if usual else ""
            scores[fmt]["usual"].append(
                score_response(usual_text, reference, tools, tool_call_format=fmt).total
            )
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
                    slices[name][value].append((imitation, scores[fmt]["usual"][-1]))
    feedback = curated_feedback(f"{root}/data", day_list)
    cached, each_call = reward_rate(rows) if reward_rates else (0.0, 0.0)
    return {
        "reward_scores_per_s": {"validator_cached": cached, "schema_checked_each_call": each_call},
        "world": world,
        "seed": seed,
        "dataset_counts": dataset.counts,
        "test_prompts": len(rows),
        "pipeline_s": round(pipeline_s, 1),
        "imitation": {f: _mean(s["imitation"]) for f, s in scores.items()},
        "usual": {f: _mean(s["usual"]) for f, s in scores.items()},
        "perfect": {f: _mean(s["perfect"]) for f, s in scores.items()},
        "slices": {
            name: {
                value: {"n": len(v), "imitation": _mean([i for i, _ in v]), "usual": _mean([u for _, u in v])}
                for value, v in sorted(by.items())
            }
            for name, by in slices.items()
        },
        "feedback": feedback,
        "feedback_share": round(feedback["with_feedback"] / max(feedback["interactions"], 1), 3),
        "correction_share": round(feedback["with_correction"] / max(feedback["interactions"], 1), 3),
        "test_correction_share": round(
            sum(r["extra_info"]["reference_source"] == "correction" for r in rows) / max(len(rows), 1), 3
        ),
    }


def reward_rate(rows: list[dict[str, Any]], repeats: int = 3) -> tuple[float, float]:
    """Scores per second of the logged answers on ``rows``: as the reward runs (one validator per tool
    schema, the schema checked once) and with the schema checked on every call (what
    ``jsonschema.validate`` does, the reward's way before), in the same process."""
    from continuous_learning.models.tool_calls import format_calls
    from continuous_learning_trainer import rewards
    from continuous_learning_trainer.sft import logged_answer

    cases = []
    for row in rows:
        reference = json.loads(row["reward_model"]["ground_truth"])
        logged = logged_answer(reference, row["extra_info"]["reference_source"])
        tools = json.loads(row["extra_info"]["tools_json"] or "null")
        cases.append((format_calls(logged["tool_calls"]), reference, tools))

    def validate_each_call(call: dict[str, Any], schemas: dict[str, dict[str, Any]]) -> bool:
        """The reward's schema check before: ``jsonschema.validate`` (checks the schema every time)."""
        import jsonschema

        if not schemas:
            return True
        if call["name"] not in schemas:
            return False
        try:
            jsonschema.validate(call["arguments"], schemas[call["name"]])
        except jsonschema.ValidationError:
            return False
        return True

    rates = []
    cached_check = rewards._valid_against
    try:
        for check in (cached_check, validate_each_call):
            rewards._valid_against = check  # type: ignore[assignment]
            began = time.perf_counter()
            for _ in range(repeats):
                for text, reference, tools in cases:
                    rewards.score_response(text, reference, tools)
            rates.append(round(repeats * len(cases) / (time.perf_counter() - began)))
    finally:
        rewards._valid_against = cached_check  # type: ignore[assignment]
    return rates[0], rates[1]


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 4) if values else float("nan")


def tables(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "# World benchmark: headroom for learning from feedback",
        "",
        f"Command: `.venv/bin/python benchmarks/world/run.py --days {args.days} --per-day {args.per_day} "
        f"--seeds {args.seeds} --write` ({platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}).",
        "",
        "Held-out (test split) prompts of the reward dataset that the real ingest and dataset builder make "
        f"from {args.days} generated days of {args.per_day} interactions (local settings: validation 0.1, "
        "test 0.2); the project's reward with its default weights (format 0.2, tool name 0.4, arguments 0.4, "
        "negative penalty 0.5). *Imitation*: the agent's logged answer (what the imitation warm start "
        "trains on); *usual*: the agent's most likely answer to the request (what a perfect imitator of the "
        "agent writes); *perfect*: the reference (the correction, or the answer that drew positive feedback).",
        "",
        "| world | seed | test prompts | imitation (hermes / llama3_json / mistral) | usual | perfect | "
        "interactions with feedback | with a correction | test prompts from corrections | pipeline s |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        imitation = " / ".join(f"{r['imitation'][f]:.3f}" for f in FORMATS)
        perfect = "/".join(sorted({f"{r['perfect'][f]:.3f}" for f in FORMATS}))
        lines.append(
            f"| {r['world']} | {r['seed']} | {r['test_prompts']} | {imitation} | {r['usual']['hermes']:.3f} | "
            f"{perfect} | {r['feedback_share']:.1%} | {r['correction_share']:.1%} | "
            f"{r['test_correction_share']:.1%} | {r['pipeline_s']} |"
        )
    rates = [r["reward_scores_per_s"] for r in results]
    cached = sum(r["validator_cached"] for r in rates) / len(rates)
    each_call = sum(r["schema_checked_each_call"] for r in rates) / len(rates)
    lines += [
        "",
        f"Reward throughput on these prompts (one process, one core): {cached:,.0f} scores/s with one "
        f"validator per tool schema, {each_call:,.0f}/s with the schema checked on every call as "
        f"`jsonschema.validate` does (the reward before): {cached / max(each_call, 1e-9):.1f}x.",
    ]
    worlds: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        worlds[r["world"]].append(r)

    def mean(world: str, key: str) -> float:
        return sum(r[key]["hermes"] for r in worlds[world]) / len(worlds[world])

    lines.append("")
    for key in ("imitation", "usual"):
        means = ", ".join(f"{world} {mean(world, key):.3f}" for world in worlds)
        lines.append(f"Mean {key} over the seeds: {means}.")
    headroom = ", ".join(f"{world} {1 - mean(world, 'usual'):.3f}" for world in worlds)
    lines.append(f"Headroom for learning from feedback (perfect - usual): {headroom}.")
    production = worlds.get("production", [])
    if production:
        lines += ["", "Production world by slice (hermes; all seeds' test prompts together):", ""]
        for name in production[0]["slices"]:
            merged: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
            for r in production:
                for value, part in r["slices"][name].items():
                    merged[value][0] += part["n"]
                    merged[value][1] += part["n"] * part["imitation"]
                    merged[value][2] += part["n"] * part["usual"]
            lines += [f"| {name} | prompts | imitation | usual |", "|---|---:|---:|---:|"]
            lines += [
                f"| {value} | {int(n)} | {imitation / n:.3f} | {usual / n:.3f} |"
                for value, (n, imitation, usual) in sorted(merged.items())
            ]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--per-day", type=int, default=400)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated generator seeds")
    parser.add_argument("--workdir", type=Path, help="keep the generated data here (default: a temp folder)")
    parser.add_argument("--worlds", default="production,default", help="comma-separated; production first")
    parser.add_argument("--write", action="store_true", help="rewrite RESULTS.md's tables")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cl-world-") as tmp:
        workdir = args.workdir or Path(tmp)
        results = [
            measure_world(world, args.days, args.per_day, int(seed), workdir / f"seed-{seed}")
            for world in args.worlds.split(",")
            for seed in args.seeds.split(",")
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
