"""Spill files: rows that stages hand over through files, never through memory.

A stage's good rows go to one Arrow IPC file per piece, grouped into shards by a hash of ``interaction_id``
(:class:`SpillWriter`); a reducer reads back only its shard (:func:`read_shard`). Quarantine rows are
streamed to their own IPC file (:class:`Quarantine`), and only their counts (:class:`QuarantineSummary`)
travel back to the parent process.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
from continuous_learning.data.schema import QUARANTINE_SCHEMA

SPILL_BUFFER_BYTES = 24 * 1024 * 1024  # rows a stage holds (all shards together) before writing them out
_RAW_KEEP = 65_536  # bytes of an over-size line kept in quarantine


def shard_of(interaction_id: str, shards: int) -> int:
    return int.from_bytes(hashlib.blake2b(interaction_id.encode(), digest_size=8).digest(), "big") % shards


def quarantine_row(
    uri: str, line: int | None, kind: str, reason: str, raw: bytes | str | None
) -> dict[str, Any]:
    """One row of ``QUARANTINE_SCHEMA``; raw bytes are kept up to 64 KiB, decoded with replacement."""
    if isinstance(raw, bytes):
        raw = raw[:_RAW_KEEP].decode("utf-8", "replace")
    return {"source_uri": uri, "source_line": line, "kind": kind, "reason": reason, "raw": raw}


@dataclass
class QuarantineSummary:
    """Where a stage's quarantine rows went, and their counts."""

    file: str | None = None
    count: int = 0
    records: int = 0  # rows of kind "record": they count as quarantined records
    reasons: dict[str, int] = field(default_factory=dict)  # by reason prefix, in order of first appearance


class Quarantine:
    """Quarantine rows streamed to an Arrow IPC file; only counts stay in memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.size = 0
        self.summary = QuarantineSummary()
        self.reasons: Counter[str] = Counter()
        self.writer: Any = None

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.summary.count += 1
        self.summary.records += row["kind"] == "record"
        self.reasons[row["reason"].split(":")[0]] += 1
        self.size += len(row["raw"] or "") + len(row["reason"])
        if self.size >= SPILL_BUFFER_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self.rows:
            return
        if self.writer is None:
            self.writer = ipc.new_file(str(self.path), QUARANTINE_SCHEMA)
        self.writer.write_table(pa.Table.from_pylist(self.rows, schema=QUARANTINE_SCHEMA))
        self.rows, self.size = [], 0

    def close(self) -> QuarantineSummary:
        self._flush()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            self.summary.file = str(self.path)
        self.summary.reasons = dict(self.reasons)
        return self.summary


class SpillWriter:
    """Rows of every shard into one Arrow IPC file. Rows are buffered up to a byte budget (whatever the
    number of shards), then written as one record batch per shard, in shard order (empty ones too), so
    that batch ``flush * shards + shard`` holds a shard's rows of each flush and a reducer reads only
    its own. A row is ``(shard, *values of the schema's fields)``."""

    def __init__(self, path: Path, schema: pa.Schema, shards: int) -> None:
        self.path = path
        self.schema = schema
        self.shards = shards
        self.rows: list[tuple[Any, ...]] = []
        self.size = 0
        self.writer: Any = None

    def add(self, row: tuple[Any, ...], size: int) -> None:
        self.rows.append(row)
        self.size += size
        if self.size >= SPILL_BUFFER_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self.rows:
            return
        self.rows.sort(key=itemgetter(0))  # stable: each shard's rows keep their order
        shard_of_row, *columns = zip(*self.rows, strict=True)
        batch = pa.RecordBatch.from_arrays(
            [pa.array(values, type=f.type) for values, f in zip(columns, self.schema, strict=True)],
            schema=self.schema,
        )
        counts = Counter(shard_of_row)
        if self.writer is None:
            self.writer = ipc.new_file(str(self.path), self.schema)
        offset = 0
        for shard in range(self.shards):
            self.writer.write_batch(batch.slice(offset, counts[shard]))
            offset += counts[shard]
        self.rows, self.size = [], 0

    def close(self) -> str | None:
        self._flush()
        if self.writer is None:
            return None
        self.writer.close()
        return str(self.path)


def read_shard(paths: list[str], shard: int, shards: int, schema: pa.Schema) -> pa.Table:
    """The rows of ``shard`` in spill files written by :class:`SpillWriter`, in file order. Only those
    rows are read (into memory: mapping the files would count their neighbours' pages too)."""
    batches = []
    for path in paths:
        with pa.OSFile(path) as source:
            reader = ipc.open_file(source)
            for index in range(shard, reader.num_record_batches, shards):
                batch = reader.get_batch(index)
                if batch.num_rows:
                    batches.append(batch)
    return pa.Table.from_batches(batches, schema=schema)
