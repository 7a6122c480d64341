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


def _window_in_memory(data: str, end: date, lookback_days: int) -> dict[str, bytes]:
    """The split files as the in-memory assembly wrote them before the bucketed one: every row of every
    day as a dict, later days winning, sorted by id, one ``write_table`` per split."""
    import pyarrow as pa
    from continuous_learning.data.reward_dataset import SPLITS, VERL_SCHEMA

    latest: dict[str, dict] = {}
    for offset in range(lookback_days - 1, -1, -1):
        prefix = storage.join(data, "reward", f"dt={end - timedelta(days=offset)}")
        if storage.read_partition_pointer(prefix) is None:
            continue
        table = pq.read_table(
            io.BytesIO(storage.read_bytes(storage.partition_files(prefix)["prompts.parquet"]))
        )
        for row in table.to_pylist():
            latest[row["extra_info"]["interaction_id"]] = row
    by_split: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for interaction_id in sorted(latest):
        by_split[latest[interaction_id]["extra_info"]["split"]].append(latest[interaction_id])
    files = {}
    for split, rows in by_split.items():
        for index, row in enumerate(rows):
            row["extra_info"]["index"] = index
        sink = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows, schema=VERL_SCHEMA), sink, compression="zstd")
        files[split] = sink.getvalue()
    return files


def test_window_in_buckets_gives_the_rows_of_the_in_memory_assembly(tmp_path) -> None:
    """Bucketed assembly against the in-memory one: the same bytes in one bucket, the same rows (and
    manifest counts) in many, with an id repeated across days so the later day's copy must win."""
    import pyarrow as pa

    data = _prepare(tmp_path, 3)
    # Day 3 repeats two ids of day 1 with other content: the day-3 copies must be the ones kept.
    day1 = pq.read_table(
        io.BytesIO(
            storage.read_bytes(storage.partition_files(f"{data}/reward/dt={START}")["prompts.parquet"])
        )
    )
    repeated = day1.slice(0, 2).to_pylist()
    for row in repeated:
        row["reward_model"]["ground_truth"] = json.dumps(
            {"content": "later", "tool_calls": [], "negatives": []}
        )
    last = START + timedelta(days=2)
    prefix = f"{data}/reward/dt={last}"
    day3 = pq.read_table(io.BytesIO(storage.read_bytes(storage.partition_files(prefix)["prompts.parquet"])))
    from continuous_learning.data.reward_dataset import VERL_SCHEMA

    merged = pa.concat_tables([day3, pa.Table.from_pylist(repeated, schema=VERL_SCHEMA)])
    path = tmp_path / "day3.parquet"
    pq.write_table(merged, path, compression="zstd")
    storage.commit_partition_files(
        prefix, {"prompts.parquet": path}, {"day": str(last), "rows": merged.num_rows}
    )

    expected = _window_in_memory(data, last, 4)
    whole = assemble_window(data, last, 4)
    assert whole.counts == {s: pq.read_table(io.BytesIO(b)).num_rows for s, b in expected.items()}
    for split, content in expected.items():
        assert storage.read_bytes(whole.split_uri(split)) == content, split
    buckets = assemble_window(data, last, 4, bucket_bytes=20_000)
    assert buckets.manifest == whole.manifest
    for split, content in expected.items():
        table = pq.read_table(io.BytesIO(storage.read_bytes(buckets.split_uri(split))))
        assert pq.ParquetFile(io.BytesIO(storage.read_bytes(buckets.split_uri(split)))).num_row_groups > 1
        assert table.to_pylist() == pq.read_table(io.BytesIO(content)).to_pylist(), split
    kept = {
        r["extra_info"]["interaction_id"]: r
        for s in expected
        for r in pq.read_table(io.BytesIO(expected[s])).to_pylist()
    }
    assert all(
        json.loads(kept[r["extra_info"]["interaction_id"]]["reward_model"]["ground_truth"])["content"]
        == "later"
        for r in repeated
    )
