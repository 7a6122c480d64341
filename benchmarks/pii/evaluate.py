"""Precision and recall of the PII redactor on the hand-labelled set beside this file.

Usage: .venv/bin/python benchmarks/pii/evaluate.py   (prints a table; exit 0)
A finding counts as correct when its kind and text equal a labelled item of that example.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from continuous_learning.data.pii import Redactor

LABELLED = Path(__file__).with_name("labelled.jsonl")


def evaluate(path: Path = LABELLED) -> dict[str, dict[str, float]]:
    true_pos: Counter[str] = Counter()
    false_pos: Counter[str] = Counter()
    false_neg: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        example = json.loads(line)
        redactor = Redactor()
        redactor.found = []
        redactor.redact(example["text"])
        expected = Counter(
            (kind, value.strip()) for kind, values in example["pii"].items() for value in values
        )
        found = Counter((kind, value.strip()) for kind, value in redactor.found)
        for (kind, _), n in (found & expected).items():
            true_pos[kind] += n
        for (kind, _), n in (found - expected).items():
            false_pos[kind] += n
        for (kind, _), n in (expected - found).items():
            false_neg[kind] += n
    table = {}
    for kind in [*sorted(set(true_pos) | set(false_pos) | set(false_neg)), "ALL"]:
        tp = sum(true_pos.values()) if kind == "ALL" else true_pos[kind]
        fp = sum(false_pos.values()) if kind == "ALL" else false_pos[kind]
        fn = sum(false_neg.values()) if kind == "ALL" else false_neg[kind]
        table[kind] = {
            "precision": tp / (tp + fp) if tp + fp else 1.0,
            "recall": tp / (tp + fn) if tp + fn else 1.0,
            "tp": tp,
            "fp": fp,
            "fn": fn,
        }
    return table


def main() -> int:
    print("| kind | precision | recall | tp | fp | fn |\n|---|---:|---:|---:|---:|---:|")
    for kind, row in evaluate().items():
        print(
            f"| {kind} | {row['precision']:.2f} | {row['recall']:.2f} | {row['tp']} | {row['fp']} | {row['fn']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
