"""Reward datasets in VeRL's parquet format, from curated partitions.

A day's reward partition holds the RL prompts that day's interactions give; a training dataset
is the union of the reward partitions of a lookback window, deduplicated by ``interaction_id``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from continuous_learning import storage

log = logging.getLogger(__name__)
SPLITS = ("train", "validation", "test")

_FUNCTION = pa.struct([pa.field("name", pa.string()), pa.field("arguments", pa.string())])
_TOOL_CALL = pa.struct(
    [pa.field("id", pa.string()), pa.field("type", pa.string()), pa.field("function", _FUNCTION)]
)
MESSAGE_TYPE = pa.struct(
    [
        pa.field("role", pa.string()),
        pa.field("content", pa.string()),
        pa.field("tool_calls", pa.list_(_TOOL_CALL)),
        pa.field("tool_call_id", pa.string()),
    ]
)
VERL_SCHEMA = pa.schema(
    [
        pa.field("data_source", pa.string(), nullable=False),
        pa.field("prompt", pa.list_(MESSAGE_TYPE), nullable=False),
        pa.field("ability", pa.string(), nullable=False),
        pa.field(
            "reward_model",
            pa.struct([pa.field("style", pa.string()), pa.field("ground_truth", pa.string())]),
            nullable=False,
        ),
        pa.field(
            "extra_info",
            pa.struct(
                [
                    pa.field("interaction_id", pa.string()),
                    pa.field("agent", pa.string()),
                    pa.field("day", pa.string()),
                    pa.field("split", pa.string()),
                    pa.field("index", pa.int64()),
                    pa.field("feedback_score", pa.float64()),
                    pa.field("reference_source", pa.string()),
                    pa.field("tools_json", pa.string()),
                ]
            ),
            nullable=False,
        ),
    ]
)


def split_of(interaction_id: str, validation_share: float, test_share: float) -> str:
    """Deterministic split by hash: stable across days, runs and machines."""
    bucket = int.from_bytes(hashlib.sha256(interaction_id.encode()).digest()[:8], "big") / 2**64
    if bucket < test_share:
        return "test"
    if bucket < test_share + validation_share:
        return "validation"
    return "train"


def _reference_of(message: dict[str, Any]) -> dict[str, Any]:
    calls = [
        {"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
        for c in message.get("tool_calls") or []
    ]
    return {"content": message.get("content"), "tool_calls": calls}


def _normalise_message(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "role": message["role"],
        "content": message.get("content"),
        "tool_calls": message.get("tool_calls"),
        "tool_call_id": message.get("tool_call_id"),
    }


@dataclass
class DayDatasetReport:
    day: str
    curated_rows: int = 0
    prompts: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    by_split: dict[str, int] = field(default_factory=dict)
    by_agent: dict[str, int] = field(default_factory=dict)
    uri: str | None = None


def rows_from_curated(
    table: pa.Table, day: date, validation_share: float, test_share: float
) -> tuple[list[dict[str, Any]], Counter[str]]:
    rows: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    for rec in table.to_pylist():
        messages = json.loads(rec["messages_json"])
        final = messages[-1]
        score = rec["feedback_score"]
        negatives: list[dict[str, Any]] = []
        if rec["correction_json"]:
            reference = _reference_of(json.loads(rec["correction_json"]) | {"role": "assistant"})
            source = "correction"
            negatives.append(_reference_of(final))  # the user corrected what the agent said
        elif score is not None and score > 0:
            reference, source = _reference_of(final), "positive_feedback"
        else:
            skipped[
                "no correction and no positive feedback"
                if score is None or score == 0
                else "negative feedback without correction"
            ] += 1
            continue
        if negatives and negatives[0] == reference:
            negatives = []
        split = split_of(rec["interaction_id"], validation_share, test_share)
        rows.append(
            {
                "data_source": f"agent/{rec['agent']}",
                "prompt": [_normalise_message(m) for m in messages[:-1]],
                "ability": "tool_use" if reference["tool_calls"] else "chat",
                "reward_model": {
                    "style": "rule",
                    "ground_truth": json.dumps({**reference, "negatives": negatives}, sort_keys=True),
                },
                "extra_info": {
                    "interaction_id": rec["interaction_id"],
                    "agent": rec["agent"],
                    "day": day.isoformat(),
                    "split": split,
                    "index": 0,
                    "feedback_score": score,
                    "reference_source": source,
                    "tools_json": rec["tools_json"],
                },
            }
        )
    return rows, skipped


def _to_parquet(rows: list[dict[str, Any]]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=VERL_SCHEMA), sink, compression="zstd")
    return sink.getvalue()


def build_day_partition(
    data_uri: str, day: date, validation_share: float, test_share: float, batch_rows: int = 20_000
) -> DayDatasetReport:
    """Write ``<data>/reward/dt=DAY/`` from the day's curated partition (empty if none).

    Streams the curated parquet in batches, so memory does not grow with the day's size.
    Rows keep the curated order (deterministic for identical input).
    """
    report = DayDatasetReport(day=day.isoformat())
    skipped: Counter[str] = Counter()
    by_split: Counter[str] = Counter()
    by_agent: Counter[str] = Counter()
    files = storage.partition_files(storage.join(data_uri, "curated", f"dt={day.isoformat()}"))
    with tempfile.TemporaryDirectory(prefix="cl-reward-") as tmp:
        out_path = Path(tmp) / "prompts.parquet"
        writer = pq.ParquetWriter(str(out_path), VERL_SCHEMA, compression="zstd")
        try:
            if "interactions.parquet" in files:
                curated_path = Path(tmp) / "curated.parquet"
                storage.store_for(data_uri).download_file(files["interactions.parquet"], curated_path)
                curated = pq.ParquetFile(curated_path)
                report.curated_rows = curated.metadata.num_rows
                for batch in curated.iter_batches(batch_size=batch_rows):
                    rows, batch_skipped = rows_from_curated(
                        pa.Table.from_batches([batch]), day, validation_share, test_share
                    )
                    skipped.update(batch_skipped)
                    by_split.update(r["extra_info"]["split"] for r in rows)
                    by_agent.update(r["extra_info"]["agent"] for r in rows)
                    report.prompts += len(rows)
                    if rows:
                        writer.write_table(pa.Table.from_pylist(rows, schema=VERL_SCHEMA))
        finally:
            writer.close()
        report.skipped = dict(skipped)
        report.by_split = dict(by_split)
        report.by_agent = dict(by_agent)
        prefix = storage.join(data_uri, "reward", f"dt={day.isoformat()}")
        storage.commit_partition_files(
            prefix,
            {"prompts.parquet": out_path},
            {"day": report.day, "rows": report.prompts, "report": report.__dict__},
        )
    report.uri = prefix
    log.info("reward partition %s: %d prompts, skipped %s", day, report.prompts, report.skipped)
    return report


@dataclass
class TrainingDataset:
    dataset_id: str
    uri: str
    counts: dict[str, int]
    manifest: dict[str, Any]

    def split_uri(self, split: str) -> str:
        return storage.join(self.uri, f"{split}.parquet")


def assemble_window(
    data_uri: str, end: date, lookback_days: int, config: dict[str, Any] | None = None
) -> TrainingDataset:
    """Union the reward partitions of ``[end - lookback + 1, end]`` into train/validation/test files.

    The dataset id hashes the exact input partitions, so the same window gives the same dataset.
    """
    inputs = []
    latest: dict[str, dict[str, Any]] = {}
    for offset in range(lookback_days - 1, -1, -1):
        day = end - timedelta(days=offset)
        prefix = storage.join(data_uri, "reward", f"dt={day.isoformat()}")
        pointer = storage.read_partition_pointer(prefix)
        if pointer is None:
            inputs.append({"day": day.isoformat(), "present": False})
            continue
        inputs.append(
            {"day": day.isoformat(), "present": True, "run_id": pointer["run_id"], "files": pointer["files"]}
        )
        data = storage.read_bytes(storage.partition_files(prefix)["prompts.parquet"])
        for row in pq.read_table(io.BytesIO(data)).to_pylist():
            latest[row["extra_info"]["interaction_id"]] = row  # later days win
    key = json.dumps({"inputs": inputs, "config": config or {}}, sort_keys=True)
    dataset_id = f"{end.isoformat()}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    uri = storage.join(data_uri, "datasets", dataset_id)
    by_split: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for interaction_id in sorted(latest):
        row = latest[interaction_id]
        by_split[row["extra_info"]["split"]].append(row)
    for split, rows in by_split.items():
        for index, row in enumerate(rows):
            row["extra_info"]["index"] = index
        storage.write_bytes(storage.join(uri, f"{split}.parquet"), _to_parquet(rows))
    counts = {s: len(r) for s, r in by_split.items()}
    agents = {s: dict(Counter(r["extra_info"]["agent"] for r in rows)) for s, rows in by_split.items()}
    manifest = {
        "kind": "training_dataset",
        "schema_version": 1,
        "dataset_id": dataset_id,
        "window": {"end": end.isoformat(), "lookback_days": lookback_days},
        "inputs": inputs,
        "counts": counts,
        "counts_by_agent": agents,
        "config": config or {},
        "files": {s: storage.join(uri, f"{s}.parquet") for s in SPLITS},
    }
    storage.write_json(storage.join(uri, "manifest.json"), manifest)
    return TrainingDataset(dataset_id, uri, counts, manifest)
