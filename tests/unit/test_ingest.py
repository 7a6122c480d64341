from __future__ import annotations

import gzip
import io
import json
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from continuous_learning import storage
from continuous_learning.data.ingest import IngestError, ingest_day, read_curated
from continuous_learning.data.synthetic import generate_logs, make_interaction

DAY = date(2026, 11, 2)


def _record(index: int, **changes: object) -> dict:
    import random

    record, _ = make_interaction(random.Random(index), DAY, index)
    record.update(changes)
    return record


def _write(root: Path, name: str, data: bytes) -> None:
    path = root / "raw" / f"dt={DAY}" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _quarantine(out: str) -> list[dict]:
    files = storage.partition_files(storage.join(out, "quarantine", f"dt={DAY}"))
    return pq.read_table(io.BytesIO(storage.read_bytes(files["records.parquet"]))).to_pylist()


def test_accounting_identity_on_generated_day(tmp_path: Path) -> None:
    root = f"file://{tmp_path}"
    generate_logs(root, DAY, 1, 300, seed=5)
    report = ingest_day(DAY, f"{root}/raw", f"{root}/data", f"{root}/feedback")
    assert report.read == report.accepted + report.duplicates + report.quarantined
    assert report.accepted == 300 - report.conflicts
    assert report.duplicates > 0 and report.quarantined > 0
    table = read_curated(f"{root}/data", DAY)
    assert table is not None and table.num_rows == report.accepted
    assert len(set(table.column("interaction_id").to_pylist())) == table.num_rows


def test_every_kind_of_bad_input_is_quarantined_with_its_reason(tmp_path: Path) -> None:
    good = [_record(i) for i in range(6)]
    big = _record(50, padding="x" * 5000)
    conflict = dict(good[1], agent="other_agent")
    lines = [json.dumps(r) for r in good[:4]] + [
        '{"schema_version": 1, "interaction_id": "broken',
        json.dumps({k: v for k, v in good[4].items() if k != "messages"}),
        json.dumps(dict(good[5], timestamp=12345)),
        json.dumps(dict(_record(7), schema_version=9)),
        json.dumps(big),
        json.dumps(good[0]),  # exact duplicate
        json.dumps(conflict),  # same id, different content
        "[1, 2, 3]",
        "",
    ]
    _write(tmp_path, "a.jsonl", ("\n".join(lines) + "\n").encode() + b"\xff\xfe{bad utf8}\n")
    whole = gzip.compress((json.dumps(_record(20)) + "\n" + json.dumps(_record(21)) + "\n").encode() * 50)
    _write(tmp_path, "b.jsonl.gz", whole[: len(whole) // 2])  # truncated gzip
    _write(tmp_path, "empty.jsonl", b"")
    _write(tmp_path, "notes.txt", b"not logs")
    root = f"file://{tmp_path}"
    report = ingest_day(DAY, f"{root}/raw", f"{root}/data", None, max_record_bytes=4000)
    assert report.read == report.accepted + report.duplicates + report.quarantined
    reasons = " | ".join(q["reason"] for q in _quarantine(f"{root}/data"))
    for expected in (
        "malformed JSON",
        "missing required field `messages`",
        "timestamp",
        "unsupported schema_version 9",
        "exceeds the 4000-byte limit",
        "conflicting duplicate",
        "must be a JSON object",
        "invalid UTF-8",
        "truncated or corrupt gzip",
        "empty file",
        "stray file",
    ):
        assert expected in reasons, expected
    assert report.duplicates >= 1
    assert report.conflicts == 1
    conflict_rows = [q for q in _quarantine(f"{root}/data") if "conflicting" in q["reason"]]
    assert len(conflict_rows) == 2 and "a.jsonl:2" in conflict_rows[0]["reason"]
    assert report.accepted >= 3 + 1  # good[0], good[2], good[3] and the records before the gzip break


def test_rerun_is_byte_identical_and_swaps_atomically(tmp_path: Path) -> None:
    root = f"file://{tmp_path}"
    generate_logs(root, DAY, 1, 100, seed=6)
    first = ingest_day(DAY, f"{root}/raw", f"{root}/data", f"{root}/feedback")
    files_a = storage.partition_files(first.curated_uri or "")
    bytes_a = storage.read_bytes(files_a["interactions.parquet"])
    second = ingest_day(DAY, f"{root}/raw", f"{root}/data", f"{root}/feedback")
    files_b = storage.partition_files(second.curated_uri or "")
    assert files_a == files_b
    assert storage.read_bytes(files_b["interactions.parquet"]) == bytes_a
    runs = list((tmp_path / "data" / "curated" / f"dt={DAY}" / "_runs").iterdir())
    assert len(runs) == 1  # the old run folder is gone after the swap


def test_missing_day_gives_an_empty_partition(tmp_path: Path) -> None:
    root = f"file://{tmp_path}"
    report = ingest_day(DAY, f"{root}/raw", f"{root}/data", f"{root}/feedback")
    assert (report.read, report.accepted, report.quarantined) == (0, 0, 0)
    table = read_curated(f"{root}/data", DAY)
    assert table is not None and table.num_rows == 0


def test_quarantine_share_above_limit_fails_naming_the_share(tmp_path: Path) -> None:
    _write(tmp_path, "a.jsonl", b"not json\n" * 5 + (json.dumps(_record(1)) + "\n").encode())
    root = f"file://{tmp_path}"
    with pytest.raises(
        IngestError, match=r"5 of 6 records quarantined \(83.3%\), above the configured limit"
    ):
        ingest_day(DAY, f"{root}/raw", f"{root}/data", None, max_quarantine_share=0.5)
    assert _quarantine(f"{root}/data")  # what was rejected is kept for inspection
    assert read_curated(f"{root}/data", DAY) is None  # no curated partition was published


def test_pii_is_redacted_in_text_and_tool_arguments(tmp_path: Path) -> None:
    record = _record(3)
    record["messages"][-2]["content"] = "mail me at jane.doe@example.com or call +44 20 7946 0958"
    args = json.dumps({"note": "card 4111 1111 1111 1111, ip 10.1.2.3"})
    record["messages"][-1]["tool_calls"][0]["function"]["arguments"] = args
    _write(tmp_path, "a.jsonl", (json.dumps(record) + "\n").encode())
    root = f"file://{tmp_path}"
    report = ingest_day(DAY, f"{root}/raw", f"{root}/data", None)
    table = read_curated(f"{root}/data", DAY)
    assert table is not None
    messages = table.column("messages_json")[0].as_py()
    for secret in ("jane.doe@example.com", "7946 0958", "4111 1111 1111 1111", "10.1.2.3"):
        assert secret not in messages
    assert report.redactions == {"CREDIT_CARD": 1, "EMAIL": 1, "IP_ADDRESS": 1, "PHONE": 1}
