"""Per-step tables from VeRL's metrics (``file`` logger) and nvidia-smi samples brought back from the device.

    .venv/bin/python benchmarks/gpu/summarize.py benchmarks/gpu/logs --params 357000000

Prints markdown: one row per step with the time split, rollout / training / end-to-end tokens per second,
peak GPU memory, MFU against 790 TFLOP/s (dense bf16 measured on an H200 here), and a mean per phase.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import re
from datetime import datetime
from pathlib import Path

PEAK = 790e12


def load(path: Path) -> list[dict[str, float]]:
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            data = {k: v for k, v in entry["data"].items() if isinstance(v, (int, float))}
            data["step"] = entry["step"]
            rows.append(data)
    return rows


def row(m: dict[str, float], params: float, samples: int) -> dict[str, float]:
    t = lambda k: m.get(f"timing_s/{k}", 0.0)  # noqa: E731
    resp = m.get("response_length/mean", 0.0) * samples
    prompt = m.get("prompt_length/mean", 0.0) * samples
    tokens = m.get("perf/total_num_tokens", resp + prompt)
    step = t("step") or 1e-9
    # 2N FLOP per token forward, 6N forward+backward: generation (responses), old log-prob + ref (all), update.
    flops = 2 * params * resp + 2 * params * tokens * 2 + 6 * params * tokens
    sync = next((t(k) for k in ("update_weights", "sync_weights", "weight_sync") if t(k)), 0.0)
    return {
        "step": m["step"],
        "step_s": step,
        "gen_s": t("gen"),
        "old_logp_s": t("old_log_prob"),
        "ref_s": t("ref"),
        "update_s": t("update_actor"),
        "sync_s": sync,
        "rollout_tok_s": resp / t("gen") if t("gen") else 0.0,
        "train_tok_s": tokens / t("update_actor") if t("update_actor") else 0.0,
        "e2e_tok_s": tokens / step,
        "peak_mem_gb": m.get("actor/perf/max_memory_reserved_gb", m.get("perf/max_memory_reserved_gb", 0.0)),
        "mfu_pct": 100 * flops / step / PEAK,
        "verl_mfu_pct": 100 * m.get("perf/mfu/actor", 0.0),
        "reward": m.get("critic/score/mean", 0.0),
        "resp_len": m.get("response_length/mean", 0.0),
    }


COLS = list(row({"step": 0}, 1, 1))


def table(rows: list[dict[str, float]]) -> str:
    out = ["| " + " | ".join(COLS) + " |", "|" + "---|" * len(COLS)]
    for r in rows:
        out.append("| " + " | ".join(f"{r[c]:.0f}" if c == "step" else f"{r[c]:.3g}" for c in COLS) + " |")
    return "\n".join(out)


def mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {c: sum(r[c] for r in rows) / len(rows) for c in COLS} if rows else {}


def gpu_util(logs: Path) -> str:
    """Mean and max GPU utilisation in each window between the device log's stamps."""
    gpu = logs / "gpu.csv"
    dev = logs / "device.log"
    if not gpu.exists() or not dev.exists():
        return ""
    samples = []
    for rec in csv.reader(gpu.open()):
        try:
            ts = datetime.strptime(rec[0].strip(), "%Y/%m/%d %H:%M:%S.%f")
            # one GPU: timestamp, util, memory; several: timestamp, index, util, memory (one row each)
            util, mem = (rec[1], rec[2]) if len(rec) == 3 else (rec[2], rec[3])
            samples.append((ts, float(util), float(mem)))
        except (ValueError, IndexError):
            continue
    stamps = []
    for line in dev.read_text().splitlines():
        m = re.match(r"\[(\S+) \+\d+s\] (.*)", line)
        if m:
            stamps.append((datetime.strptime(m.group(1), "%Y/%m/%d_%H:%M:%S"), m.group(2)))
    out = [
        "| window | seconds | GPU util mean % (all GPUs) | GPU util max % | GPU mem max MiB (one GPU) |",
        "|---|---|---|---|---|",
    ]
    for (a, label), (b, _) in itertools.pairwise(stamps):
        win = [s for s in samples if a <= s[0] < b]
        if win:
            util = [s[1] for s in win]
            out.append(
                f"| {label[:60]} | {(b - a).seconds} | {sum(util) / len(util):.0f} | {max(util):.0f} | "
                f"{max(s[2] for s in win):.0f} |"
            )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("logs")
    ap.add_argument("--params", type=float, required=True)
    ap.add_argument("--samples", type=int, default=128, help="sequences per step")
    ap.add_argument(
        "--compare", nargs=2, metavar=("BASE", "OTHER"), help="e.g. metrics_A.jsonl metrics_B.jsonl"
    )
    ap.add_argument("--checkpoint-every", type=int, default=3)
    args = ap.parse_args()
    logs = Path(args.logs)
    steady_by_run: dict[str, list[dict[str, float]]] = {}
    for name in ("metrics_A.jsonl", "metrics_B.jsonl", "metrics_C.jsonl", "metrics_S.jsonl"):
        path = logs / name
        if not path.exists():
            continue
        rows = [row(m, args.params, args.samples) for m in load(path)]
        print(f"\n### {name}\n\n{table(rows)}\n")
        steady = rows[1:] if len(rows) > 2 else rows
        steady_by_run[name] = steady
        print(
            "mean over steps after the first: "
            + json.dumps({k: round(v, 3) for k, v in mean(steady).items()})
        )
    if args.compare:
        compare(steady_by_run, *args.compare, args.checkpoint_every)
    print("\n" + gpu_util(logs))


def compare(runs: dict[str, list[dict[str, float]]], base: str, other: str, every: int) -> None:
    """End-to-end tokens/s and step time of two runs, over all steady steps and over the steps that
    saved no checkpoint (a save adds seconds that have nothing to do with the configuration)."""
    last = max(r["step"] for r in runs[other] + runs[base])
    plain = lambda rows: [r for r in rows if r["step"] % every and r["step"] != last]  # noqa: E731
    print(f"\n| steps | {base} e2e tok/s | {other} e2e tok/s | ratio | {base} s/step | {other} s/step |")
    print("|---|---|---|---|---|---|")
    for label, pick in (("all after the first", lambda rows: rows), ("without a checkpoint save", plain)):
        a, b = mean(pick(runs[base])), mean(pick(runs[other]))
        print(
            f"| {label} | {a['e2e_tok_s']:.0f} | {b['e2e_tok_s']:.0f} | {b['e2e_tok_s'] / a['e2e_tok_s']:.2f}x "
            f"| {a['step_s']:.1f} | {b['step_s']:.1f} |"
        )


if __name__ == "__main__":
    main()
