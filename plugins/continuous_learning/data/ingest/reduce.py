"""The second stage: one shard's staged rows deduplicated, joined with their late feedback, and written
sorted by ``interaction_id``. Every copy of an id lands in the same shard, so a shard is decided alone."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
from continuous_learning.data.ingest.curate import ENCODER, add_counts, feedback_fields
from continuous_learning.data.ingest.reading import Chunk
from continuous_learning.data.ingest.report import IngestError
from continuous_learning.data.ingest.spill import Quarantine, QuarantineSummary, quarantine_row, read_shard
from continuous_learning.data.ingest.stage import FEEDBACK_SCHEMA, STAGED_SCHEMA
from continuous_learning.data.pii import Redactor
from continuous_learning.data.schema import CURATED_SCHEMA


@dataclass
class ShardResult:
    """What reducing one shard found; its curated rows are in ``table_file``."""

    shard: int
    table_file: str
    rows: int = 0
    duplicates: int = 0
    conflicts: int = 0
    feedback_joined: int = 0
    unmatched: QuarantineSummary = field(default_factory=QuarantineSummary)
    quarantine: QuarantineSummary = field(default_factory=QuarantineSummary)
    redactions: dict[str, int] = field(default_factory=dict)


def _deduplicate(
    staged: pa.Table, lines: pa.Array, chunks: list[Chunk], quarantine: Quarantine, result: ShardResult
) -> pa.Array:
    """Indices of the accepted rows of ``staged``. An id seen once is accepted; the rows of an id seen more
    than once are taken in (file, line) order: exact copies are duplicates, and different contents under
    one id are all quarantined as conflicting duplicates."""
    ids = staged.column("interaction_id").combine_chunks()
    counts = pc.value_counts(ids)
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    if len(repeated) == 0:
        return pa.array(range(len(ids)), pa.int64())
    is_repeated = pc.is_in(ids, value_set=repeated)
    singles = pc.indices_nonzero(pc.invert(is_repeated)).cast(pa.int64())
    candidates = pc.indices_nonzero(is_repeated).cast(pa.int64())
    keys = ids.take(candidates).to_pylist()
    shas = staged.column("content_sha256").take(candidates).to_pylist()
    chunk_of = staged.column("chunk").take(candidates).to_pylist()
    numbers = lines.take(candidates).to_pylist()
    chunk_uris = [c.uri for c in chunks]
    first_by_id: dict[str, int] = {}
    hashes: dict[str, set[str]] = {}
    conflicted: dict[str, list[str]] = {}
    bad_rows: list[tuple[int, str]] = []
    for i in sorted(range(len(keys)), key=lambda i: (chunk_of[i], numbers[i])):  # chunks are in file order
        key = keys[i]
        seen = hashes.setdefault(key, set())
        if shas[i] in seen:
            result.duplicates += 1
            continue
        seen.add(shas[i])
        if key in first_by_id or key in conflicted:
            names = conflicted.setdefault(key, [])
            if key in first_by_id:
                first = first_by_id.pop(key)
                names.append(f"{chunk_uris[chunk_of[first]]}:{numbers[first]}")
                result.conflicts += 1
                bad_rows.append((first, key))
            names.append(f"{chunk_uris[chunk_of[i]]}:{numbers[i]}")
            bad_rows.append((i, key))
            continue
        first_by_id[key] = i
    wanted: dict[int, dict[int, str]] = {}  # chunk -> line in chunk -> content hash
    chunk_lines = staged.column("line").take(candidates).to_pylist()
    for i, _ in bad_rows:
        wanted.setdefault(chunk_of[i], {})[chunk_lines[i]] = shas[i]
    raws = {c: reread_lines(chunks[c], wanted[c]) for c in wanted}
    for i, key in bad_rows:
        sources = ", ".join(conflicted[key])
        reason = f"conflicting duplicate: interaction_id {key!r} has different content in {sources}"
        raw = raws[chunk_of[i]][chunk_lines[i]]
        quarantine.add(quarantine_row(chunk_uris[chunk_of[i]], numbers[i], "record", reason, raw))
    winners = candidates.take(pa.array(sorted(first_by_id.values()), pa.int64()))
    return pa.concat_arrays([singles, winners])


def reread_lines(chunk: Chunk, wanted: dict[int, str]) -> dict[int, bytes]:
    """Lines of ``chunk`` by number, read again from its file (only conflicting duplicates need their
    text, so the spill does not carry every line); each must still have its staged content hash."""
    found: dict[int, bytes] = {}
    for number, line, _ in chunk.iter_lines():
        if number in wanted and line is not None:
            line = line.rstrip(b"\r\n")
            if hashlib.sha256(ENCODER.encode(msgspec.json.decode(line))).hexdigest() != wanted[number]:
                raise IngestError(f"{chunk.uri} changed while it was being ingested (line {number})")
            found[number] = line
            if len(found) == len(wanted):
                break
    return found


def _single(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def reduce_shard(
    shard: int,
    shards: int,
    raw_files: list[str],
    feedback_files: list[str],
    chunks: list[Chunk],
    chunk_offsets: list[int],
    out_dir: str,
) -> ShardResult:
    """Deduplicate one shard, join its late feedback; write its rows sorted by ``interaction_id``.

    ``chunk_offsets[c]`` is the number of lines of chunk ``c``'s file before the chunk.
    """
    result = ShardResult(shard, str(Path(out_dir) / f"curated-{shard:05d}.arrow"))
    quarantine = Quarantine(Path(out_dir) / f"quarantine-shard-{shard:05d}.arrow")
    staged = read_shard(raw_files, shard, shards, STAGED_SCHEMA)
    chunk_ids = _single(staged.column("chunk"))
    lines = pc.add(_single(staged.column("line")), pa.array(chunk_offsets, pa.int64()).take(chunk_ids))
    accepted = _deduplicate(staged, lines, chunks, quarantine, result)
    accepted = accepted.take(pc.sort_indices(_single(staged.column("interaction_id")).take(accepted)))
    rows = staged.drop_columns(["line"]).take(accepted)
    result.rows = rows.num_rows
    columns = {
        name: _single(rows.column(name)) for name in CURATED_SCHEMA.names if name in STAGED_SCHEMA.names
    }
    columns["source_uri"] = pa.array([c.uri for c in chunks], pa.string()).take(chunk_ids.take(accepted))
    columns["source_line"] = lines.take(accepted)

    redactions: Counter[str] = Counter()
    late_rows = _join_late_feedback(feedback_files, shard, shards, rows, columns, redactions, result, out_dir)
    for encoded in _non_null(rows.column("pii")):
        add_counts(redactions, encoded)
    feedback_counts = _single(rows.column("pii_feedback"))
    for index in pc.indices_nonzero(pc.is_valid(feedback_counts)).to_pylist():
        if index not in late_rows:
            add_counts(redactions, feedback_counts[index].as_py())
    result.redactions = dict(redactions)

    table = pa.Table.from_arrays([columns[name] for name in CURATED_SCHEMA.names], schema=CURATED_SCHEMA)
    with ipc.new_file(result.table_file, CURATED_SCHEMA) as writer:
        writer.write_table(table)
    result.quarantine = quarantine.close()
    return result


def _non_null(column: pa.ChunkedArray) -> list[Any]:
    return column.filter(pc.is_valid(column)).to_pylist()


def _join_late_feedback(
    feedback_files: list[str],
    shard: int,
    shards: int,
    rows: pa.Table,
    columns: dict[str, Any],
    redactions: Counter[str],
    result: ShardResult,
    out_dir: str,
) -> set[int]:
    """Join the shard's late feedback into ``columns``; quarantine same-day feedback for unknown ids.

    Returns the positions of the rows whose feedback columns were recomputed."""
    feedback = read_shard(feedback_files, shard, shards, FEEDBACK_SCHEMA)
    if feedback.num_rows == 0:
        return set()
    position = {key: i for i, key in enumerate(rows.column("interaction_id").to_pylist())}
    late_by_row: dict[int, list[bytes]] = {}
    unmatched = Quarantine(Path(out_dir) / f"unmatched-{shard:05d}.arrow")
    for key, same_day, uri, line, raw in zip(
        *(feedback.column(name).to_pylist() for name in ("interaction_id", "same_day", "uri", "line", "raw")),
        strict=True,
    ):
        if key in position:
            late_by_row.setdefault(position[key], []).append(raw)
        elif same_day:
            body = msgspec.json.decode(raw)
            unmatched.add(
                quarantine_row(
                    uri, line, "unmatched_feedback",
                    f"feedback for interaction {key!r}, not among this day's interactions; "
                    "kept for reprocessing of its day",
                    json.dumps(body, sort_keys=True),
                )
            )  # fmt: skip
    result.unmatched = unmatched.close()
    if not late_by_row:
        return set()
    redactor = Redactor()
    changed = sorted(late_by_row)
    inline_column = rows.column("inline_feedback")
    replacements: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
    for index in changed:
        inline_json = inline_column[index].as_py()
        inline = msgspec.json.decode(inline_json) if inline_json is not None else []
        late = [msgspec.json.decode(raw) for raw in late_by_row[index]]
        result.feedback_joined += len(late)
        for values, value in zip(replacements, feedback_fields(inline, late, redactor), strict=True):
            values.append(value)
    redactions.update(redactor.counts)
    mask = pc.is_in(pa.array(range(rows.num_rows), pa.int64()), value_set=pa.array(changed, pa.int64()))
    for name, values in zip(
        ("feedback_json", "feedback_score", "correction_json"), replacements, strict=True
    ):
        column = columns[name]
        columns[name] = pc.replace_with_mask(column, mask, pa.array(values, column.type))
    return set(changed)
