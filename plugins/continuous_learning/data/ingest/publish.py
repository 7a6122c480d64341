"""Publishing a day: its quarantine file (every rejected row, in a stable order) and its curated partition
with the manifest, each committed atomically; and reading a committed curated partition back."""

from __future__ import annotations

import io
import json
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from continuous_learning import storage
from continuous_learning.contracts import partition_uri
from continuous_learning.data.ingest.reduce import ShardResult
from continuous_learning.data.ingest.report import IngestReport
from continuous_learning.data.ingest.stage import FeedbackStage, FileStage, line_offsets
from continuous_learning.data.schema import QUARANTINE_SCHEMA

# pyarrow's default row-group size: the quarantine file is written in these pieces, as pq.write_table would.
_QUARANTINE_ROW_GROUP = 1024 * 1024


def _read_ipc(path: str | None) -> pa.Table | None:
    if path is None:
        return None
    return ipc.open_file(pa.memory_map(path)).read_all()


def write_quarantine(
    path: Path,
    head: list[dict[str, Any]],
    feedback: FeedbackStage,
    stages: list[FileStage],
    results: list[ShardResult],
) -> None:
    """The quarantine file: every quarantined row sorted by (file, line, reason), then unmatched feedback
    sorted by (file, line). Rows come from the stages' files; line numbers of chunks are made absolute."""
    parts = [pa.Table.from_pylist(head, schema=QUARANTINE_SCHEMA)]
    if (table := _read_ipc(feedback.quarantine.file)) is not None:
        parts.append(table)
    for stage, offset in zip(stages, line_offsets(stages), strict=True):
        if (table := _read_ipc(stage.quarantine.file)) is not None:
            if offset:
                table = table.set_column(1, "source_line", pc.add(table.column("source_line"), offset))
            parts.append(table)
    parts += [t for r in results if (t := _read_ipc(r.quarantine.file)) is not None]
    quarantine = pa.concat_tables(parts)
    keys = pa.table(
        {
            "uri": quarantine.column("source_uri"),
            "line": pc.fill_null(quarantine.column("source_line"), 0),
            "reason": quarantine.column("reason"),
        }
    )
    order = pc.sort_indices(
        keys, sort_keys=[("uri", "ascending"), ("line", "ascending"), ("reason", "ascending")]
    )
    unmatched_parts = [t for r in results if (t := _read_ipc(r.unmatched.file)) is not None]
    unmatched = pa.concat_tables(unmatched_parts) if unmatched_parts else QUARANTINE_SCHEMA.empty_table()
    unmatched_order = pc.sort_indices(
        unmatched.select(["source_uri", "source_line"]),
        sort_keys=[("source_uri", "ascending"), ("source_line", "ascending")],
    )
    total = quarantine.num_rows + unmatched.num_rows
    if total <= _QUARANTINE_ROW_GROUP:
        table = pa.concat_tables([quarantine.take(order), unmatched.take(unmatched_order)]).combine_chunks()
        pq.write_table(table, str(path), compression="zstd", store_schema=True)
        return
    # More rows than one row group holds: write one row group at a time, as pq.write_table would.
    indices = [(quarantine, order), (unmatched, unmatched_order)]
    with pq.ParquetWriter(str(path), QUARANTINE_SCHEMA, compression="zstd", store_schema=True) as writer:
        for start in range(0, total, _QUARANTINE_ROW_GROUP):
            pieces = []
            end = start + _QUARANTINE_ROW_GROUP
            offset = 0
            for table, index in indices:
                lo, hi = max(start - offset, 0), min(end - offset, len(index))
                if lo < hi:
                    pieces.append(table.take(index.slice(lo, hi - lo)))
                offset += len(index)
            writer.write_table(pa.concat_tables(pieces).combine_chunks())


def publish_quarantine(
    tmp: Path,
    out_uri: str,
    day: date,
    head: list[dict[str, Any]],
    feedback: FeedbackStage,
    stages: list[FileStage],
    results: list[ShardResult],
) -> str:
    """Write and commit the day's quarantine partition (``head``: rows of skipped files); its prefix."""
    prefix = partition_uri(out_uri, "quarantine", day)
    path = tmp / "records.parquet"
    write_quarantine(path, head, feedback, stages, results)
    storage.commit_partition_files(prefix, {"records.parquet": path}, {"day": day.isoformat()})
    return prefix


def curated_prefix(out_uri: str, day: date) -> str:
    return partition_uri(out_uri, "curated", day)


def publish_curated(
    tmp: Path,
    report: IngestReport,
    curated_path: Path,
    inputs: list[storage.ObjectInfo],
    feedback: FeedbackStage,
    feedback_horizon_days: int,
) -> None:
    """Commit the curated table and its manifest (the report, the inputs) under ``report.curated_uri``."""
    assert report.curated_uri is not None
    manifest = {
        "kind": "curated_partition",
        "schema_version": 1,
        "report": report.as_dict(),
        "inputs": [{"uri": o.uri, "size": o.size} for o in inputs],
        "feedback_inputs": feedback.inputs,
        "feedback_horizon_days": feedback_horizon_days,
    }
    manifest_path = tmp / "manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    storage.commit_partition_files(
        report.curated_uri,
        {"interactions.parquet": curated_path, "manifest.json": manifest_path},
        {"day": report.day, "rows": report.accepted},
    )


def read_curated(data_uri: str, day: date) -> pa.Table | None:
    """The committed curated table of ``day``, or None if that day was never ingested."""
    files = storage.partition_files(curated_prefix(data_uri, day))
    if "interactions.parquet" not in files:
        return None
    return pq.read_table(io.BytesIO(storage.read_bytes(files["interactions.parquet"])))
