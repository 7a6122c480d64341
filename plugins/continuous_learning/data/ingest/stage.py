"""The first stage: one chunk of raw lines (or the day's late feedback) validated, curated and spilled.

:func:`stage_chunk` streams a chunk line by line: it validates each record (schema v1), quarantines what is
bad, and turns each good record into its curated fields (PII redacted, JSON encoded) at once, so no record
is decoded twice. The rows are spilled, grouped by shard of ``interaction_id``, to one file per chunk.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
from continuous_learning import storage
from continuous_learning.data.ingest.curate import ENCODER, curated_fields
from continuous_learning.data.ingest.reading import Chunk, day_prefix, iter_lines
from continuous_learning.data.ingest.spill import (
    Quarantine,
    QuarantineSummary,
    SpillWriter,
    quarantine_row,
    shard_of,
)
from continuous_learning.data.pii import Redactor
from continuous_learning.data.schema import RecordError, decode_interaction, read_late_feedback

# One row per valid record, with its curated fields already computed (see ``curated_fields``).
STAGED_SCHEMA = pa.schema(
    [
        ("interaction_id", pa.string()),
        ("content_sha256", pa.string()),
        ("chunk", pa.int32()),
        ("line", pa.int64()),  # within the chunk
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("agent", pa.string()),
        ("model_version", pa.string()),
        ("session_id", pa.string()),
        ("messages_json", pa.string()),
        ("tools_json", pa.string()),
        ("outcome_json", pa.string()),
        ("feedback_json", pa.string()),
        ("feedback_score", pa.float64()),
        ("correction_json", pa.string()),
        ("metadata_json", pa.string()),
        ("inline_feedback", pa.binary()),  # the inline events (JSON), to join late feedback with
        ("pii", pa.string()),  # redaction counts of messages and metadata: "KIND=n;KIND=n"
        ("pii_feedback", pa.string()),  # redaction counts of the inline feedback and its correction
    ]
)
FEEDBACK_SCHEMA = pa.schema(
    [
        ("interaction_id", pa.string()),
        ("same_day", pa.bool_()),
        ("uri", pa.string()),
        ("line", pa.int64()),
        ("raw", pa.binary()),
    ]
)


@dataclass
class FileStage:
    """What staging one chunk found. Rows are in files; only counts are kept."""

    uri: str
    chunk: int = 0
    read: int = 0
    blank_lines: int = 0
    lines: int = 0  # lines in the chunk (line numbers of the next chunk of the file start after them)
    quarantine: QuarantineSummary = field(default_factory=QuarantineSummary)
    spill_file: str | None = None


def line_offsets(stages: list[FileStage]) -> list[int]:
    """For each stage, the number of lines of its file before its chunk."""
    offsets, seen = [], Counter[str]()
    for stage in stages:  # in chunk order: a file's chunks in offset order
        offsets.append(seen[stage.uri])
        seen[stage.uri] += stage.lines
    return offsets


def stage_chunk(chunk: Chunk, shards: int, spill_dir: str, max_record_bytes: int) -> FileStage:
    """Validate and curate one chunk; spill its good records by shard of ``interaction_id``."""
    stage = FileStage(chunk.uri, chunk.index)
    quarantine = Quarantine(Path(spill_dir) / f"quarantine-raw-{chunk.index:05d}.arrow")
    writer = SpillWriter(Path(spill_dir) / f"raw-{chunk.index:05d}.arrow", STAGED_SCHEMA, shards)
    redactor = Redactor()
    uri = chunk.uri
    number = 0
    for number, line, note in chunk.iter_lines():
        if note is not None and note.broken:
            if line is None or not line.strip():
                quarantine.add(quarantine_row(uri, number, "file", note.reason, None))
            else:  # the incomplete remainder before a stream error: a record read, quarantined
                stage.read += 1
                quarantine.add(quarantine_row(uri, number, "record", note.reason, line))
            continue
        assert line is not None
        if not line.strip():
            stage.blank_lines += 1
            continue
        stage.read += 1
        line = line.rstrip(b"\r\n")
        if len(line) > max_record_bytes:
            reason = f"record of {len(line)} bytes exceeds the {max_record_bytes}-byte limit"
            quarantine.add(quarantine_row(uri, number, "record", reason, line))
            continue
        try:
            line.isascii() or line.decode("utf-8")
        except UnicodeDecodeError as exc:
            quarantine.add(quarantine_row(uri, number, "record", f"invalid UTF-8 at byte {exc.start}", line))
            continue
        try:
            record, generic = decode_interaction(line)
        except RecordError as exc:
            reason = str(exc)
            if note is not None and reason.startswith("malformed JSON"):
                reason = f"{reason} ({note.reason})"
            quarantine.add(quarantine_row(uri, number, "record", reason, line))
            continue
        key = record.interaction_id
        sha = hashlib.sha256(ENCODER.encode(generic)).hexdigest()
        row = (
            shard_of(key, shards),
            key,
            sha,
            chunk.index,
            number,
            *curated_fields(record, generic, redactor),
        )
        writer.add(row, len(line))
    stage.lines = number
    stage.spill_file = writer.close()
    stage.quarantine = quarantine.close()
    return stage


@dataclass
class FeedbackStage:
    read: int = 0
    inputs: list[dict[str, Any]] = field(default_factory=list)
    quarantine: QuarantineSummary = field(default_factory=QuarantineSummary)
    spill_file: str | None = None


def stage_feedback(
    feedback_uri: str | None, day: date, horizon_days: int, shards: int, spill_dir: str
) -> FeedbackStage:
    """Spill feedback of ``dt=day .. dt=day+horizon`` into shards; bad lines of ``dt=day`` are quarantined."""
    stage = FeedbackStage()
    if not feedback_uri:
        return stage
    quarantine = Quarantine(Path(spill_dir) / "quarantine-feedback.arrow")
    writer = SpillWriter(Path(spill_dir) / "feedback.arrow", FEEDBACK_SCHEMA, shards)
    for offset in range(horizon_days + 1):
        same_day = offset == 0
        for obj in storage.list_objects(day_prefix(feedback_uri, day + timedelta(days=offset))):
            stage.inputs.append({"uri": obj.uri, "size": obj.size})
            for number, line, note in iter_lines(obj.uri):
                if line is not None and not line.strip():
                    continue
                stage.read += same_day
                try:
                    if line is None or (note is not None and note.broken):
                        raise RecordError(note.reason if note is not None else "unreadable")
                    event, normalised = read_late_feedback(line.rstrip(b"\r\n"))
                except RecordError as exc:
                    if same_day:
                        quarantine.add(quarantine_row(obj.uri, number, "feedback", str(exc), line))
                    continue
                assert event.interaction_id is not None
                key = event.interaction_id
                kept = line if normalised is None else normalised  # as written, or in the plain form
                writer.add((shard_of(key, shards), key, same_day, obj.uri, number, kept), len(kept))
    stage.spill_file = writer.close()
    stage.quarantine = quarantine.close()
    return stage
