"""Byte identity of ingest's output: one fixed input, the sha256 of every file ingest and the dataset build write.

Usage: .venv/bin/python benchmarks/ingest/identity.py [--workdir DIR] [--workers N] [--chunk-bytes B]
Prints one JSON object {relative path: sha256}. Run it with two versions of the code (for example with
``PYTHONPATH=<old checkout>/plugins``) and compare: partitions are content-addressed, so any change in
what ingest writes (rows, their order, the parquet bytes, the quarantine, the manifest) changes a hash.

The input: three generated days (malformed lines, duplicates, PII, late and same-day feedback, feedback
for other days) plus hand-written edge cases on the first day: conflicting duplicates, several inline
feedback events with exact repeats and ties, corrections as text and as tool calls, PII in every free-text
field (non-ASCII text and digits, tokens spelled with look-alike letters), over-size and invalid UTF-8
lines, CRLF endings, a blank line, a last line without a newline, a truncated gzip file, an empty file, a
stray file, a marker file and bad late-feedback lines. URIs are relative to the working directory, so the
hashes do not depend on where the fixture lives.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import inspect
import json
import os
import random
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

START = date(2026, 11, 24)
DAYS = 3
PER_DAY = 400

# Free text that exercises every redaction rule, its look-alikes and non-ASCII text.
PII_TEXTS = [
    "mail jane.doe@example.com or OMAR_77+x@mail.co.uk, call +44 20 7946 0958 or (415) 555-0132",
    "card 4111 1111 1111 1111 and 4111 1111 1111 1112 (fails Luhn), ssn 123-45-6789, ip 10.1.2.3",
    "ipv6 2001:db8::8a2e:370:7334, loopback ::1, hex abcd:abcd:abcd:abcd:abcd:abcd:abcd:abcd",
    "keys AKIAIOSFODNN7EXAMPLE aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY1",
    "Authorization: Bearer abcdefghijklmnop1234.xyz and sk_live_ABCDEFGHIJKLMNOP1234 ghp_" + "a" * 36,
    "xoxb-1234567890-abcdef token, order 84729103, invoice 2026-000123, ticket #5550132",
    "Résumé für Zoë: café@exemple.fr, téléphone +33 1 42 68 53 00, \u0664\u0661\u0661\u0661 \u0661\u0661\u0661\u0661 \u0661\u0661\u0661\u0661 \u0661\u0661\u0661\u0661",
    "Asia trip with GH_TOKEN and aws_\u017fecret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY1 BEARER "
    + "x" * 20,
    "full-width \uff14\uff11\uff15-\uff15\uff15\uff15-\uff10\uff11\uff13\uff12 and 2001:DB8:0:0:8:800:200C:417A and 192.168.001.1 and 999.1.1.1",
    "nothing to see here: version 3.11.7 on 2026-11-28 at 15:00",
]


def _day_dir(root: Path, kind: str, day: date) -> Path:
    path = root / kind / f"dt={day.isoformat()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _edge_records(day: date) -> tuple[list[str], list[str]]:
    """(raw lines for ``day``, late feedback lines arriving on ``day``)."""
    from continuous_learning.data.synthetic import make_interaction

    rng = random.Random(99)
    base = [make_interaction(rng, day, 900_000 + i)[0] for i in range(12)]
    lines: list[str] = []
    # PII everywhere free text may hold it: user text, tool arguments, tool results, metadata, feedback.
    for index, text in enumerate(PII_TEXTS):
        record = json.loads(json.dumps(base[index % len(base)]))
        record["interaction_id"] = f"edge-pii-{index}"
        record["messages"][-2]["content"] = text
        call = record["messages"][-1]["tool_calls"][0]["function"]
        arguments = {"note": text, "n": index, "nested": {"deep": [text, 1.5]}}
        call["arguments"] = json.dumps(arguments, ensure_ascii=False)
        record["messages"].insert(-1, {"role": "assistant", "content": f"noted: {text}"})
        record["profile"] = {"contact": text, "tags": ["vip", text], "score": index}
        record["client"] = text[:20]
        record["feedback"] = [
            {"timestamp": "2026-11-24T10:00:00+02:00", "type": "thumbs", "value": -1, "source": text},
            {"timestamp": "2026-11-24T10:00:00+02:00", "type": "thumbs", "value": -1, "source": text},
            {"timestamp": "2026-11-24T09:00:00Z", "type": "rating", "value": 2},
            {"timestamp": "2026-11-24T09:00:00Z", "type": "correction", "content": f"say: {text}"},
            {
                "timestamp": "2026-11-24T09:00:00Z",
                "type": "correction",
                "content": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c9",
                            "type": "function",
                            "function": {
                                "name": "get_weather",
                                "arguments": json.dumps({"q": text}, ensure_ascii=False),
                            },
                        }
                    ],
                },
            },
        ]
        if index % 3 == 0:
            record["timestamp"] = "2026-11-24T23:30:00-05:00"
        lines.append(json.dumps(record, ensure_ascii=index % 2 == 0))
    # Conflicts: the same id with different content (three versions, one repeated), and exact duplicates.
    conflict = dict(base[0], interaction_id="edge-conflict")
    lines += [
        json.dumps(conflict),
        json.dumps(dict(conflict, agent="other_agent")),
        json.dumps(conflict),
        json.dumps(dict(conflict, agent="third_agent")),
        json.dumps(dict(base[1], interaction_id="edge-dup")),
        json.dumps(dict(base[1], interaction_id="edge-dup"), indent=None, separators=(",", ":")),
    ]
    # Bad lines of every kind, CRLF endings and a blank line.
    lines += [
        '{"schema_version": 1, "interaction_id": "broken',
        json.dumps({k: v for k, v in base[2].items() if k != "messages"}),
        json.dumps(dict(base[3], timestamp=12345)),
        json.dumps(dict(base[4], schema_version=7, interaction_id="edge-v7")),
        json.dumps(dict(base[5], interaction_id="edge-big", padding="x" * 30_000)),
        "[1, 2, 3]",
        "",
        json.dumps(dict(base[6], interaction_id="edge-crlf")) + "\r",
        json.dumps(dict(base[7], interaction_id="edge-fb")),
        json.dumps(dict(base[8], interaction_id="edge-fb-other")),
    ]
    feedback = [
        json.dumps({"interaction_id": "edge-fb", "timestamp": "2026-11-24T12:00:00Z", "type": "rating",
                    "value": 5, "source": "call me at +44 20 7946 0958", "extra": {"k": "v@example.com"}}),
        json.dumps({"interaction_id": "edge-fb", "timestamp": "2026-11-24T12:00:00Z", "type": "rating",
                    "value": 5, "source": "call me at +44 20 7946 0958", "extra": {"k": "v@example.com"}}),
        json.dumps({"interaction_id": "edge-conflict", "timestamp": "2026-11-24T12:00:00Z",
                    "type": "thumbs", "value": 1}),
        json.dumps({"interaction_id": "edge-pii-1", "timestamp": "2026-11-24T13:00:00Z",
                    "type": "correction", "content": {"role": "assistant", "content": "help@example.com"}}),
        json.dumps({"interaction_id": "nobody-here", "timestamp": "2026-11-24T13:00:00Z",
                    "type": "thumbs", "value": 1}),
        '{"interaction_id": "edge-fb", "type": "thumbs", "value": 3, "timestamp": "2026-11-24T13:00:00Z"}',
        "not json at all",
        "",
    ]  # fmt: skip
    return lines, feedback


def write_fixture(root: Path) -> None:
    """Write the fixed input under ``root`` (``raw/`` and ``feedback/``)."""
    from continuous_learning.data.synthetic import generate_logs

    generate_logs(f"file://{root}", START, DAYS, PER_DAY, seed=21)
    raw = _day_dir(root, "raw", START)
    lines, feedback = _edge_records(START)
    body = "\n".join(lines).encode() + b"\n" + b"\xff\xfe{bad utf8}\n" + b'{"last": "no newline"}'
    (raw / "edge.jsonl").write_bytes(body)
    whole = gzip.compress("".join(line + "\n" for line in lines[:6]).encode() * 3, mtime=0)
    (raw / "edge-truncated.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    (raw / "empty.jsonl").write_bytes(b"")
    (raw / "notes.txt").write_bytes(b"not logs")
    (raw / "_SUCCESS").write_bytes(b"")
    with (_day_dir(root, "feedback", START) / "edge.jsonl").open("a") as fh:
        fh.write("\n".join(feedback) + "\n")
    with (_day_dir(root, "feedback", START + timedelta(days=1)) / "edge.jsonl").open("a") as fh:
        fh.write("\n".join([*feedback[:4], "not json either"]) + "\n")


def digest_tree(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def run(workdir: Path, **ingest_options: Any) -> dict[str, str]:
    """Write the fixture in ``workdir``, ingest and build every day; {path under data/: sha256}."""
    from continuous_learning.data.ingest import ingest_day
    from continuous_learning.data.reward_dataset import build_day_partition

    supported = inspect.signature(ingest_day).parameters
    options = {k: v for k, v in ingest_options.items() if v is not None and k in supported}
    workdir.mkdir(parents=True, exist_ok=True)
    previous = Path.cwd()
    os.chdir(workdir)  # relative file:// URIs: outputs independent of the fixture's location
    try:
        write_fixture(Path("fixture"))
        for offset in range(DAYS):
            day = START + timedelta(days=offset)
            ingest_day(
                day,
                "file://fixture/raw",
                "file://fixture/data",
                "file://fixture/feedback",
                max_record_bytes=20_000,
                **options,
            )
            build_day_partition("file://fixture/data", day, 0.1, 0.2)
        return digest_tree(Path("fixture/data"))
    finally:
        os.chdir(previous)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, required=True, help="an empty or missing folder")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--chunk-bytes", type=int)
    parser.add_argument("--shards", type=int)
    args = parser.parse_args()
    hashes = run(args.workdir, workers=args.workers, chunk_bytes=args.chunk_bytes, shards=args.shards)
    print(json.dumps(hashes, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
