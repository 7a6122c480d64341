"""Curves of one GPU loop (``loop.py``'s ``loop.jsonl``) as a PNG: held-out reward of production and of each
day's candidate on the fixed test set, and the batch reward of every GRPO step (VeRL's ``critic/score/mean``).

    .venv/bin/python benchmarks/gpu/plot_loop.py benchmarks/gpu/logs/2026-12-04-loop-d
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on CI or the GPU host
import matplotlib.pyplot as plt


def read_stages(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "loop.jsonl").read_text().splitlines() if line.strip()]


def plot(folder: Path, out: Path) -> None:
    stages = read_stages(folder)
    evaluations = [s for s in stages if s["stage"] == "evaluate"]
    trains = [s for s in stages if s["stage"] == "train" and s.get("history")]
    figure, (held_out, batch) = plt.subplots(1, 2, figsize=(11, 4))

    # production after each day (day 0: v0 as first evaluated), and the day's candidate
    production = [(0, evaluations[0]["fixed_set"]["production"])] if evaluations else []
    for e in evaluations:
        production.append((e["day"], e["production_after"]))
        held_out.scatter([e["day"]], [e["fixed_set"]["candidate"]], marker="x", color="tab:orange",
                         label="candidate" if e is evaluations[0] else None)  # fmt: skip
    held_out.step(*zip(*production, strict=True), where="post", color="tab:blue", label="production")
    for e in evaluations:
        if e.get("promoted"):
            held_out.annotate(f"promoted {e['promoted']}", (e["day"], e["production_after"]),
                              textcoords="offset points", xytext=(-60, 8))  # fmt: skip
    held_out.set(xlabel="day", ylabel="mean reward, fixed held-out set", title="held-out reward by day")
    held_out.set_xticks(range(0, max([e["day"] for e in evaluations], default=0) + 1))
    held_out.legend()

    for t in trains:
        steps = [h["step"] for h in t["history"] if "critic/score/mean" in h]
        scores = [h["critic/score/mean"] for h in t["history"] if "critic/score/mean" in h]
        if steps:
            batch.plot(steps, scores, marker="o", label=f"day {t['day']} ({t.get('algorithm', 'grpo')})")
    batch.set(xlabel="GRPO step", ylabel="batch reward", title="batch reward per step")
    batch.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--out", type=Path, default=None, help="default: <folder>/curves.png")
    args = ap.parse_args()
    out = args.out or args.folder / "curves.png"
    plot(args.folder, out)
    print(out)


if __name__ == "__main__":
    main()
