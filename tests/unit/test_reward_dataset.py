from __future__ import annotations

import io
import json
from collections import Counter
from datetime import date, timedelta

import pyarrow.parquet as pq
from continuous_learning import storage
from continuous_learning.data.ingest import ingest_day
from continuous_learning.data.reward_dataset import assemble_window, build_day_partition, split_of
from continuous_learning.data.synthetic import generate_logs

START = date(2026, 11, 1)


def _prepare(tmp_path, days: int = 2) -> str:
    root = f"file://{tmp_path}"
    generate_logs(root, START, days, 200, seed=9)
    for offset in range(days):
        day = START + timedelta(days=offset)
        ingest_day(day, f"{root}/raw", f"{root}/data", f"{root}/feedback")
        build_day_partition(f"{root}/data", day, 0.1, 0.2)
    return f"{root}/data"


def test_split_is_deterministic_and_close_to_the_shares() -> None:
    ids = [f"id-{i}" for i in range(5000)]
    splits = Counter(split_of(i, 0.1, 0.2) for i in ids)
    assert [split_of(i, 0.1, 0.2) for i in ids[:50]] == [split_of(i, 0.1, 0.2) for i in ids[:50]]
    assert abs(splits["test"] / 5000 - 0.2) < 0.03 and abs(splits["validation"] / 5000 - 0.1) < 0.03


def test_day_partition_has_verl_columns_and_references(tmp_path) -> None:
    data = _prepare(tmp_path, 1)
    files = storage.partition_files(storage.join(data, "reward", f"dt={START}"))
    rows = pq.read_table(io.BytesIO(storage.read_bytes(files["prompts.parquet"]))).to_pylist()
    assert rows
    row = rows[0]
    assert set(row) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
    assert row["prompt"][-1]["role"] == "user"
    sources = Counter(r["extra_info"]["reference_source"] for r in rows)
    assert sources["correction"] > 0 and sources["positive_feedback"] > 0
    for r in rows:
        truth = json.loads(r["reward_model"]["ground_truth"])
        assert truth["tool_calls"]
        if r["extra_info"]["reference_source"] == "correction":
            assert truth["negatives"], "a corrected answer is kept as a negative reference"


def test_window_dedupes_and_is_reproducible(tmp_path) -> None:
    data = _prepare(tmp_path, 2)
    first = assemble_window(data, START + timedelta(days=1), 2)
    again = assemble_window(data, START + timedelta(days=1), 2)
    assert first.dataset_id == again.dataset_id
    total = sum(first.counts.values())
    ids = []
    for split in ("train", "validation", "test"):
        table = pq.read_table(io.BytesIO(storage.read_bytes(first.split_uri(split))))
        ids += table.column("extra_info").combine_chunks().field("interaction_id").to_pylist()
    assert len(ids) == len(set(ids)) == total
    assert [i["present"] for i in first.manifest["inputs"]] == [True, True]
    longer = assemble_window(data, START + timedelta(days=2), 3)
    assert longer.dataset_id != first.dataset_id
    assert [i["present"] for i in longer.manifest["inputs"]] == [True, True, False]


def test_a_correction_given_as_text_becomes_a_chat_reference(tmp_path) -> None:
    import random

    from continuous_learning.data.synthetic import make_interaction

    record, _ = make_interaction(random.Random(3), START, 1)
    record["feedback"] = [{"timestamp": f"{START}T10:00:00Z", "type": "correction", "content": "Say hello."}]
    raw = tmp_path / "raw" / f"dt={START}"
    raw.mkdir(parents=True)
    (raw / "a.jsonl").write_text(json.dumps(record) + "\n")
    root = f"file://{tmp_path}"
    ingest_day(START, f"{root}/raw", f"{root}/data", None)
    report = build_day_partition(f"{root}/data", START, 0.0, 0.0)
    assert report.prompts == 1
    files = storage.partition_files(storage.join(f"{root}/data", "reward", f"dt={START}"))
    row = pq.read_table(io.BytesIO(storage.read_bytes(files["prompts.parquet"]))).to_pylist()[0]
    truth = json.loads(row["reward_model"]["ground_truth"])
    assert (row["ability"], truth["content"], truth["tool_calls"]) == ("chat", "Say hello.", [])
    assert truth["negatives"] and truth["negatives"][0]["tool_calls"]  # what the agent did instead


def test_an_email_after_a_json_escape_is_redacted_and_the_arguments_stay_json(tmp_path) -> None:
    """JSON text is redacted string by string and spliced back: an email right after a JSON escape
    (caf\\u00e9@...) is redacted whole and the tool-call arguments still parse, so the row gives a reference."""
    import random

    from continuous_learning.data.synthetic import make_interaction

    records = [make_interaction(random.Random(i), START, i)[0] for i in range(2)]
    for record in records:
        record["feedback"] = [{"timestamp": f"{START}T10:00:00Z", "type": "thumbs", "value": 1}]
    call = records[0]["messages"][-1]["tool_calls"][0]["function"]
    call["arguments"] = json.dumps({"note": "write to café@exemple.fr"})  # ASCII escapes: caf\u00e9@
    raw = tmp_path / "raw" / f"dt={START}"
    raw.mkdir(parents=True)
    (raw / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    root = f"file://{tmp_path}"
    ingest_day(START, f"{root}/raw", f"{root}/data", None)
    report = build_day_partition(f"{root}/data", START, 0.0, 0.0)
    assert report.prompts == 2
    assert report.skipped == {}
    files = storage.partition_files(storage.join(f"{root}/data", "reward", f"dt={START}"))
    rows = pq.read_table(io.BytesIO(storage.read_bytes(files["prompts.parquet"]))).to_pylist()
    truths = [json.loads(r["reward_model"]["ground_truth"]) for r in rows]
    assert {"note": "write to <EMAIL>"} in [c["arguments"] for t in truths for c in t["tool_calls"]]
