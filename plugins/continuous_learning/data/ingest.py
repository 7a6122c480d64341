"""Ingest one day of raw interaction logs into a curated partition, streaming with bounded memory.

Two stages, each a plain function over files and Arrow batches:

1. :func:`stage_chunk` streams one raw file, or one piece of a large uncompressed file, line by line:
   it validates each record (schema v1), quarantines what is bad, and turns each good record into its
   curated fields (PII redacted, JSON encoded) at once, so no record is decoded twice. The rows are
   spilled, grouped by a hash of ``interaction_id`` into shards, to one Arrow IPC file per piece;
2. :func:`reduce_shard` deduplicates one shard (every copy of an id lands in the same shard) with Arrow
   compute, joins late feedback, and writes the shard's curated rows sorted by ``interaction_id``.

Memory is bounded by the piece and shard sizes, not the day's size: stages hold a fixed budget of rows
before writing them out, quarantined and unmatched records go to files, and the parent process keeps
only counts. Locally the stages run in a loop or in worker processes; with ``executor="ray"`` the same
functions run as Ray Data maps on a Ray cluster. Every line read is accounted for:
``read == accepted + duplicates + quarantined``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import multiprocessing
import os
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from continuous_learning import storage
from continuous_learning.data.pii import Redactor
from continuous_learning.data.schema import (
    CURATED_SCHEMA,
    QUARANTINE_SCHEMA,
    InteractionV1,
    RecordError,
    decode_interaction,
    read_late_feedback,
    to_builtins,
    unlisted_fields,
)

log = logging.getLogger(__name__)
RAW_SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz", ".ndjson", ".ndjson.gz")
SHARD_TARGET_BYTES = 96 * 1024 * 1024  # uncompressed input per shard; bounds peak memory
PARALLEL_MIN_BYTES = 256 * 1024 * 1024
CHUNK_BYTES = 64 * 1024 * 1024  # large uncompressed local files are staged in pieces of about this size
_GZIP_RATIO = 6  # planning estimate of compressed -> raw size
_RAW_KEEP = 65_536  # bytes of an over-size line kept in quarantine
_READ_BLOCK = 4 * 1024 * 1024
_GZIP_READ_BLOCK = 256 * 1024  # compressed bytes per step; a corrupt step is searched for its last good byte
_SPILL_BUFFER_BYTES = 24 * 1024 * 1024  # rows a stage holds (all shards together) before writing them out
# pyarrow's default row-group size: the quarantine file is written in these pieces, as pq.write_table would.
_QUARANTINE_ROW_GROUP = 1024 * 1024

# One row per valid record, with its curated fields already computed (see ``_curated_fields``).
_STAGED_SCHEMA = pa.schema(
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
_FEEDBACK_SCHEMA = pa.schema(
    [
        ("interaction_id", pa.string()),
        ("same_day", pa.bool_()),
        ("uri", pa.string()),
        ("line", pa.int64()),
        ("raw", pa.binary()),
    ]
)
_ENCODER = msgspec.json.Encoder(order="sorted")
_PLAIN_ENCODER = msgspec.json.Encoder()


def _dumps(value: Any) -> str:
    return _ENCODER.encode(value).decode()


class IngestError(RuntimeError):
    """The day cannot be ingested (for example: too large a share of bad records)."""


@dataclass
class IngestReport:
    day: str
    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    conflicts: int = 0
    blank_lines: int = 0
    files: int = 0
    skipped_files: int = 0
    shards: int = 0
    feedback_read: int = 0
    feedback_joined: int = 0
    feedback_quarantined: int = 0
    feedback_unmatched: int = 0
    redactions: dict[str, int] = field(default_factory=dict)
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    curated_uri: str | None = None
    quarantine_uri: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _day_prefix(base: str, day: date) -> str:
    return storage.join(base, f"dt={day.isoformat()}")


def shard_of(interaction_id: str, shards: int) -> int:
    return int.from_bytes(hashlib.blake2b(interaction_id.encode(), digest_size=8).digest(), "big") % shards


@dataclass(frozen=True)
class StreamNote:
    """What a reader says about a line that is not an ordinary complete line, or about a stream that failed.

    ``broken``: the stream failed (a truncated or corrupt gzip stream, a read error); a line that comes with
    this note is the incomplete remainder before the failure, and is quarantined without being decoded.
    Otherwise the line is the last of its file and has no line break: it is read like any other line (the
    note is added to the reason if it is not JSON, since the file may have been cut there)."""

    reason: str
    broken: bool


# (line number, line, note): an ordinary line has no note; a failed stream ends with (number, None, note)
# when nothing of a line was left, or with the incomplete remainder and its note.
Line = tuple[int, bytes | None, StreamNote | None]


class _StreamError(Exception):
    """Raised by a block reader after its last good block; the message says what failed, and where."""


def _raw_blocks(stream: IO[bytes]) -> Iterator[bytes]:
    try:
        while block := stream.read(_READ_BLOCK):
            yield block
    except OSError as exc:
        raise _StreamError(f"read error: {exc}") from None


def _gunzip_blocks(stream: IO[bytes]) -> Iterator[bytes]:
    """The decompressed bytes of a gzip stream (members one after another, zero padding between them
    skipped, as :mod:`gzip` reads them), in blocks. When the stream is cut off or corrupt, every byte that
    can be decompressed before the break is yielded, then :class:`_StreamError` says where it broke."""
    decompressor = zlib.decompressobj(wbits=31)
    member_done = False
    consumed = 0  # compressed bytes fed to the decompressors and used by them
    pending = b""
    while True:
        if not pending:
            try:
                pending = stream.read(_GZIP_READ_BLOCK)
            except OSError as exc:
                raise _StreamError(f"read error: after {consumed} compressed bytes ({exc})") from None
            if not pending:
                break
        if member_done:  # another member follows, or zero padding
            stripped = pending.lstrip(b"\0")
            consumed += len(pending) - len(stripped)
            pending = stripped
            if not pending:
                continue
            decompressor, member_done = zlib.decompressobj(wbits=31), False
        before = decompressor.copy()
        try:
            out = decompressor.decompress(pending)
        except zlib.error as exc:
            good = _longest_good_prefix(before, pending)
            if out := before.decompress(pending[:good]):
                yield out
            raise _StreamError(f"corrupt gzip stream: at compressed byte {consumed + good} ({exc})") from None
        if decompressor.eof:
            rest = decompressor.unused_data
            consumed += len(pending) - len(rest)
            pending, member_done = rest, True
        else:
            consumed, pending = consumed + len(pending), b""
        if out:
            yield out
    if not member_done:
        raise _StreamError(
            f"truncated gzip stream: the file ends after {consumed} compressed bytes, "
            "before the end-of-stream marker"
        )


def _longest_good_prefix(decompressor: Any, data: bytes) -> int:
    """The length of the longest prefix of ``data`` that ``decompressor`` (left as it is) takes without an
    error: a corrupt block still gives the bytes decoded before the corruption."""
    low, high = 0, len(data)  # data[:low] is good, data[:high] is not
    while high - low > 1:
        middle = (low + high) // 2
        try:
            decompressor.copy().decompress(data[:middle])
        except zlib.error:
            high = middle
        else:
            low = middle
    return low


def _split_lines(blocks: Iterator[bytes], start: int, gzip_stream: bool, ends: bool) -> Iterator[Line]:
    """Lines of a stream of blocks, numbered from 1. ``start``: the offset of the first block in its file.
    ``ends``: whether lines keep their line break. After a :class:`_StreamError` the remainder, if any, is
    yielded with a broken note giving its offset (in the decompressed stream for gzip files)."""
    number = 0
    offset = start  # of the first byte not yet in a yielded line
    pending: list[bytes] = []  # the start of a line that continues in a later block
    failure = None
    try:
        for block in blocks:
            if b"\n" not in block:
                pending.append(block)
                continue
            buffer = b"".join((*pending, block)) if pending else block
            lines = io.BytesIO(buffer).readlines() if ends else buffer.split(b"\n")
            rest = (b"" if lines[-1].endswith(b"\n") else lines.pop()) if ends else lines.pop()
            pending = [rest] if rest else []
            offset += len(buffer) - len(rest)
            for line in lines:
                number += 1
                yield number, line, None
    except _StreamError as exc:
        failure = str(exc)
    remainder = b"".join(pending)
    where = "of the decompressed stream" if gzip_stream else "of the file"
    if failure is None:
        if remainder:
            note = f"the file's last line (byte {offset} {where}) has no line break: the file may be cut off"
            yield number + 1, remainder, StreamNote(note, broken=False)
    elif remainder.strip():
        note = (
            f"truncated record: {failure}, inside line {number + 1}, which starts at byte {offset} {where} "
            f"and has {len(remainder)} bytes before the break"
        )
        yield number + 1, remainder, StreamNote(note, broken=True)
    else:
        note = (
            f"{failure}; the lines before byte {offset + len(remainder)} {where} (line {number}) are complete"
        )
        yield number + 1, None, StreamNote(note, broken=True)


def iter_lines(uri: str) -> Iterator[Line]:
    """(line number, line with its line break, note) of a raw file. Every line complete before a stream
    error comes first; see :class:`StreamNote` for the notes."""
    gzip_stream = uri.endswith(".gz")
    with storage.store_for(uri).open_read(uri) as stream:
        blocks = _gunzip_blocks(stream) if gzip_stream else _raw_blocks(stream)
        yield from _split_lines(blocks, 0, gzip_stream, ends=True)


@dataclass(frozen=True)
class Chunk:
    """A raw file, or the lines of ``[start, end)`` bytes of a large uncompressed local one."""

    uri: str
    index: int  # position among all chunks of the day: (file, offset) order
    start: int = 0
    end: int | None = None  # None: the whole file

    def iter_lines(self) -> Iterator[Line]:
        """Like :func:`iter_lines`; line numbers count from the chunk's start. Lines of uncompressed
        local files are cut from large blocks and come without their line break."""
        if self.uri.startswith("file://") and not self.uri.endswith(".gz"):
            yield from _local_lines(storage.LocalStore.path(self.uri), self.start, self.end)
        else:
            yield from iter_lines(self.uri)


def _local_blocks(stream: IO[bytes], remaining: int) -> Iterator[bytes]:
    """Blocks of an open file up to ``remaining`` bytes (-1: to its end)."""
    try:
        while remaining:
            block = stream.read(_READ_BLOCK if remaining < 0 else min(_READ_BLOCK, remaining))
            if not block:
                break
            remaining -= len(block) if remaining > 0 else 0
            yield block
    except OSError as exc:
        raise _StreamError(f"read error: {exc}") from None


def _local_lines(path: Path, start: int, end: int | None) -> Iterator[Line]:
    with path.open("rb", buffering=0) as stream:
        stream.seek(start)
        yield from _split_lines(
            _local_blocks(stream, -1 if end is None else end - start), start, False, False
        )


def plan_chunks(objects: list[storage.ObjectInfo], chunk_bytes: int = CHUNK_BYTES) -> list[Chunk]:
    """One chunk per file; uncompressed ``file://`` files above ``chunk_bytes`` are cut at line starts."""
    chunks: list[Chunk] = []
    for obj in objects:
        if not obj.uri.startswith("file://") or obj.uri.endswith(".gz") or obj.size <= chunk_bytes:
            chunks.append(Chunk(obj.uri, len(chunks)))
            continue
        starts = [0]
        with storage.LocalStore.path(obj.uri).open("rb") as stream:
            for target in range(chunk_bytes, obj.size, chunk_bytes):
                stream.seek(max(target, starts[-1] + 1) - 1)
                stream.readline()  # to the start of the next line
                if stream.tell() >= obj.size:
                    break
                starts.append(stream.tell())
        for start, end in zip(starts, [*starts[1:], obj.size], strict=True):
            chunks.append(Chunk(obj.uri, len(chunks), start, end))
    return chunks


def _quarantine_row(
    uri: str, line: int | None, kind: str, reason: str, raw: bytes | str | None
) -> dict[str, Any]:
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


class _Quarantine:
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
        if self.size >= _SPILL_BUFFER_BYTES:
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


class _SpillWriter:
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
        if self.size >= _SPILL_BUFFER_BYTES:
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


def _read_shard(paths: list[str], shard: int, shards: int, schema: pa.Schema) -> pa.Table:
    """The rows of ``shard`` in spill files written by :class:`_SpillWriter`, in file order. Only those
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


def _encode_counts(counts: Counter[str]) -> str:
    return ";".join(f"{kind}={n}" for kind, n in counts.items())


def _add_counts(total: Counter[str], encoded: str | None) -> None:
    if encoded:
        for item in encoded.split(";"):
            kind, _, n = item.partition("=")
            total[kind] += int(n)


def _curated_fields(record: InteractionV1, generic: dict[str, Any], redactor: Redactor) -> tuple[Any, ...]:
    """The curated columns of one valid record, from ``timestamp`` to ``pii_feedback`` in ``_STAGED_SCHEMA``."""
    counts = redactor.counts
    messages_json = _dumps(_redact_messages(to_builtins(record.messages), redactor))
    metadata = unlisted_fields(record, generic)
    metadata_json = _dumps(_redact_tree(metadata, redactor))
    pii = _encode_counts(counts) if counts else None
    counts.clear()
    inline = to_builtins(record.feedback) if record.feedback else []
    feedback_json, score, correction_json = _feedback_fields(inline, [], redactor) if inline else _NO_FEEDBACK
    pii_feedback = _encode_counts(counts) if counts else None
    counts.clear()
    return (
        record.timestamp,
        record.agent,
        record.model_version,
        record.session_id,
        messages_json,
        _dumps(record.tools) if record.tools is not None else None,
        _dumps(generic["outcome"]) if record.outcome is not None else None,
        feedback_json,
        score,
        correction_json,
        metadata_json,
        _PLAIN_ENCODER.encode(inline) if inline else None,
        pii,
        pii_feedback,
    )


def stage_chunk(chunk: Chunk, shards: int, spill_dir: str, max_record_bytes: int) -> FileStage:
    """Validate and curate one chunk; spill its good records by shard of ``interaction_id``."""
    stage = FileStage(chunk.uri, chunk.index)
    quarantine = _Quarantine(Path(spill_dir) / f"quarantine-raw-{chunk.index:05d}.arrow")
    writer = _SpillWriter(Path(spill_dir) / f"raw-{chunk.index:05d}.arrow", _STAGED_SCHEMA, shards)
    redactor = Redactor()
    uri = chunk.uri
    number = 0
    for number, line, note in chunk.iter_lines():
        if note is not None and note.broken:
            if line is None or not line.strip():
                quarantine.add(_quarantine_row(uri, number, "file", note.reason, None))
            else:  # the incomplete remainder before a stream error: a record read, quarantined
                stage.read += 1
                quarantine.add(_quarantine_row(uri, number, "record", note.reason, line))
            continue
        assert line is not None
        if not line.strip():
            stage.blank_lines += 1
            continue
        stage.read += 1
        line = line.rstrip(b"\r\n")
        if len(line) > max_record_bytes:
            reason = f"record of {len(line)} bytes exceeds the {max_record_bytes}-byte limit"
            quarantine.add(_quarantine_row(uri, number, "record", reason, line))
            continue
        try:
            line.isascii() or line.decode("utf-8")
        except UnicodeDecodeError as exc:
            quarantine.add(_quarantine_row(uri, number, "record", f"invalid UTF-8 at byte {exc.start}", line))
            continue
        try:
            record, generic = decode_interaction(line)
        except RecordError as exc:
            reason = str(exc)
            if note is not None and reason.startswith("malformed JSON"):
                reason = f"{reason} ({note.reason})"
            quarantine.add(_quarantine_row(uri, number, "record", reason, line))
            continue
        key = record.interaction_id
        sha = hashlib.sha256(_ENCODER.encode(generic)).hexdigest()
        row = (
            shard_of(key, shards),
            key,
            sha,
            chunk.index,
            number,
            *_curated_fields(record, generic, redactor),
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
    quarantine = _Quarantine(Path(spill_dir) / "quarantine-feedback.arrow")
    writer = _SpillWriter(Path(spill_dir) / "feedback.arrow", _FEEDBACK_SCHEMA, shards)
    for offset in range(horizon_days + 1):
        same_day = offset == 0
        for obj in storage.list_objects(_day_prefix(feedback_uri, day + timedelta(days=offset))):
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
                        quarantine.add(_quarantine_row(obj.uri, number, "feedback", str(exc), line))
                    continue
                assert event.interaction_id is not None
                key = event.interaction_id
                kept = line if normalised is None else normalised  # as written, or in the plain form
                writer.add((shard_of(key, shards), key, same_day, obj.uri, number, kept), len(kept))
    stage.spill_file = writer.close()
    stage.quarantine = quarantine.close()
    return stage


def _feedback_score(events: list[dict[str, Any]]) -> float | None:
    signals = []
    for event in events:
        if event["type"] == "thumbs":
            signals.append(float(event["value"]))
        elif event["type"] == "rating":
            signals.append((event["value"] - 3) / 2)
    return sum(signals) / len(signals) if signals else None


# Keys whose values are identifiers or machine values, never free text.
_STRUCTURAL_KEYS = frozenset(
    {"id", "tool_call_id", "role", "type", "name", "timestamp", "interaction_id", "value"}
)


def _redact_messages(messages: list[dict[str, Any]], redactor: Redactor) -> list[dict[str, Any]]:
    """Redact the free-text fields of chat messages in place: content, refusal, reasoning, tool-call
    arguments and the message's metadata (as top-level metadata is)."""
    for message in messages:
        if message.get("content"):
            message["content"] = redactor.redact(message["content"])
        for call in message.get("tool_calls") or []:
            call["function"]["arguments"] = redactor.redact(call["function"]["arguments"])
        if "refusal" in message:
            message["refusal"] = redactor.redact(message["refusal"])
        if "reasoning_content" in message:
            message["reasoning_content"] = redactor.redact(message["reasoning_content"])
        if "metadata" in message:
            message["metadata"] = _redact_tree(message["metadata"], redactor)
    return messages


def _redact_tree(value: Any, redactor: Redactor) -> Any:
    if isinstance(value, str):
        return redactor.redact(value)
    if isinstance(value, list):
        return [_redact_tree(v, redactor) for v in value]
    if isinstance(value, dict):
        return {k: v if k in _STRUCTURAL_KEYS else _redact_tree(v, redactor) for k, v in value.items()}
    return value


def _dedupe_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(events) <= 1:  # nothing to deduplicate or order
        return [{k: v for k, v in event.items() if k != "interaction_id"} for event in events]
    unique: dict[str, dict[str, Any]] = {}
    for event in events:
        event = {k: v for k, v in event.items() if k != "interaction_id"}
        unique.setdefault(json.dumps(event, sort_keys=True), event)
    return sorted(unique.values(), key=lambda e: (e["timestamp"], e["type"], json.dumps(e, sort_keys=True)))


def _feedback_fields(
    inline: list[dict[str, Any]], late: list[dict[str, Any]], redactor: Redactor
) -> tuple[str, float | None, str | None]:
    """``feedback_json``, ``feedback_score`` and ``correction_json`` of one interaction."""
    events = _dedupe_events(inline + late)
    corrections = [e for e in events if e["type"] == "correction"]
    events = _redact_tree(events, redactor)
    correction = corrections[-1]["content"] if corrections else None
    return (
        _dumps(events),
        _feedback_score(events),
        _dumps(_redact_tree(correction, redactor)) if correction is not None else None,
    )


_NO_FEEDBACK = ("[]", None, None)  # _feedback_fields([], [], redactor)


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
    staged: pa.Table, lines: pa.Array, chunks: list[Chunk], quarantine: _Quarantine, result: ShardResult
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
    raws = {c: _reread_lines(chunks[c], wanted[c]) for c in wanted}
    for i, key in bad_rows:
        sources = ", ".join(conflicted[key])
        reason = f"conflicting duplicate: interaction_id {key!r} has different content in {sources}"
        raw = raws[chunk_of[i]][chunk_lines[i]]
        quarantine.add(_quarantine_row(chunk_uris[chunk_of[i]], numbers[i], "record", reason, raw))
    winners = candidates.take(pa.array(sorted(first_by_id.values()), pa.int64()))
    return pa.concat_arrays([singles, winners])


def _reread_lines(chunk: Chunk, wanted: dict[int, str]) -> dict[int, bytes]:
    """Lines of ``chunk`` by number, read again from its file (only conflicting duplicates need their
    text, so the spill does not carry every line); each must still have its staged content hash."""
    found: dict[int, bytes] = {}
    for number, line, _ in chunk.iter_lines():
        if number in wanted and line is not None:
            line = line.rstrip(b"\r\n")
            if hashlib.sha256(_ENCODER.encode(msgspec.json.decode(line))).hexdigest() != wanted[number]:
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
    quarantine = _Quarantine(Path(out_dir) / f"quarantine-shard-{shard:05d}.arrow")
    staged = _read_shard(raw_files, shard, shards, _STAGED_SCHEMA)
    chunk_ids = _single(staged.column("chunk"))
    lines = pc.add(_single(staged.column("line")), pa.array(chunk_offsets, pa.int64()).take(chunk_ids))
    accepted = _deduplicate(staged, lines, chunks, quarantine, result)
    accepted = accepted.take(pc.sort_indices(_single(staged.column("interaction_id")).take(accepted)))
    rows = staged.drop_columns(["line"]).take(accepted)
    result.rows = rows.num_rows
    columns = {
        name: _single(rows.column(name)) for name in CURATED_SCHEMA.names if name in _STAGED_SCHEMA.names
    }
    columns["source_uri"] = pa.array([c.uri for c in chunks], pa.string()).take(chunk_ids.take(accepted))
    columns["source_line"] = lines.take(accepted)

    redactions: Counter[str] = Counter()
    late_rows = _join_late_feedback(feedback_files, shard, shards, rows, columns, redactions, result, out_dir)
    for encoded in _non_null(rows.column("pii")):
        _add_counts(redactions, encoded)
    feedback_counts = _single(rows.column("pii_feedback"))
    for index in pc.indices_nonzero(pc.is_valid(feedback_counts)).to_pylist():
        if index not in late_rows:
            _add_counts(redactions, feedback_counts[index].as_py())
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
    feedback = _read_shard(feedback_files, shard, shards, _FEEDBACK_SCHEMA)
    if feedback.num_rows == 0:
        return set()
    position = {key: i for i, key in enumerate(rows.column("interaction_id").to_pylist())}
    late_by_row: dict[int, list[bytes]] = {}
    unmatched = _Quarantine(Path(out_dir) / f"unmatched-{shard:05d}.arrow")
    for key, same_day, uri, line, raw in zip(
        *(feedback.column(name).to_pylist() for name in ("interaction_id", "same_day", "uri", "line", "raw")),
        strict=True,
    ):
        if key in position:
            late_by_row.setdefault(position[key], []).append(raw)
        elif same_day:
            body = msgspec.json.decode(raw)
            unmatched.add(
                _quarantine_row(
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
        for values, value in zip(replacements, _feedback_fields(inline, late, redactor), strict=True):
            values.append(value)
    redactions.update(redactor.counts)
    mask = pc.is_in(pa.array(range(rows.num_rows), pa.int64()), value_set=pa.array(changed, pa.int64()))
    for name, values in zip(
        ("feedback_json", "feedback_score", "correction_json"), replacements, strict=True
    ):
        column = columns[name]
        columns[name] = pc.replace_with_mask(column, mask, pa.array(values, column.type))
    return set(changed)


def _plan_shards(objects: list[storage.ObjectInfo]) -> int:
    raw_bytes = sum(o.size * (_GZIP_RATIO if o.uri.endswith(".gz") else 1) for o in objects)
    return max(1, math.ceil(raw_bytes / SHARD_TARGET_BYTES))


def _planned_bytes(chunk: Chunk, sizes: dict[str, int]) -> int:
    if chunk.end is not None:
        return chunk.end - chunk.start
    return sizes[chunk.uri] * (_GZIP_RATIO if chunk.uri.endswith(".gz") else 1)


def _line_offsets(stages: list[FileStage]) -> list[int]:
    offsets, seen = [], Counter[str]()
    for stage in stages:  # in chunk order: a file's chunks in offset order
        offsets.append(seen[stage.uri])
        seen[stage.uri] += stage.lines
    return offsets


def _reduce_args(
    shard: int,
    shards: int,
    chunks: list[Chunk],
    stages: list[FileStage],
    feedback: FeedbackStage,
    out_dir: str,
) -> tuple[Any, ...]:
    raw_parts = [st.spill_file for st in stages if st.spill_file]
    fb_parts = [feedback.spill_file] if feedback.spill_file else []
    return shard, shards, raw_parts, fb_parts, chunks, _line_offsets(stages), out_dir


def _append_table(writer: pq.ParquetWriter, result: ShardResult) -> None:
    with pa.memory_map(result.table_file) as source:
        writer.write_table(ipc.open_file(source).read_all())
    Path(result.table_file).unlink()


def _run_stages_local(
    chunks: list[Chunk],
    sizes: dict[str, int],
    shards: int,
    spill: str,
    max_record_bytes: int,
    feedback: FeedbackStage,
    out_path: Path,
    workers: int = 1,
) -> tuple[list[FileStage], list[ShardResult]]:
    """Both stages on this machine: inline, or in ``workers`` processes (spawned: safe inside Airflow tasks)."""
    writer = pq.ParquetWriter(str(out_path), CURATED_SCHEMA, compression="zstd", store_schema=True)
    results = []
    started = time.monotonic()
    try:
        if workers > 1:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                # Largest first, so that a big gzip file does not start last and run alone.
                by_size = sorted(chunks, key=lambda c: -_planned_bytes(c, sizes))
                staging: dict[int, Future[FileStage]] = {
                    c.index: pool.submit(stage_chunk, c, shards, spill, max_record_bytes) for c in by_size
                }
                stages = [staging[c.index].result() for c in chunks]
                log.info("staged %d chunks in %.1f s", len(chunks), time.monotonic() - started)
                futures = [
                    pool.submit(reduce_shard, *_reduce_args(s, shards, chunks, stages, feedback, spill))
                    for s in range(shards)
                ]
                for future in futures:  # in shard order: the output's row order is deterministic
                    result = future.result()
                    _append_table(writer, result)
                    results.append(result)
                log.info("reduced %d shards in %.1f s", shards, time.monotonic() - started)
        else:
            stages = [stage_chunk(c, shards, spill, max_record_bytes) for c in chunks]
            for shard in range(shards):
                result = reduce_shard(*_reduce_args(shard, shards, chunks, stages, feedback, spill))
                _append_table(writer, result)
                results.append(result)
    finally:
        writer.close()
    return stages, results


def _run_stages_ray(
    chunks: list[Chunk],
    shards: int,
    spill: str,
    max_record_bytes: int,
    feedback: FeedbackStage,
    out_path: Path,
    ray_address: str | None = None,
) -> tuple[list[FileStage], list[ShardResult]]:
    """Both stages as Ray Data maps (the same functions). ``spill`` must be visible to every node:
    a local path on a one-node cluster, a shared file system (FSx for Lustre) on HyperPod."""
    import ray

    if not ray.is_initialized():
        ray.init(address=ray_address or "auto", log_to_driver=False)

    def stage_row(item: dict[str, Any]) -> dict[str, Any]:
        chunk = Chunk(item["uri"], item["index"], item["start"], item["end"])
        return {"stage": stage_chunk(chunk, shards, spill, max_record_bytes)}

    items = [{"uri": c.uri, "index": c.index, "start": c.start, "end": c.end} for c in chunks]
    staged = ray.data.from_items(items).map(stage_row)
    stages = sorted((r["stage"] for r in staged.take_all()), key=lambda s: s.chunk)

    def reduce_row(item: dict[str, Any]) -> dict[str, Any]:
        return {"result": reduce_shard(*_reduce_args(item["shard"], shards, chunks, stages, feedback, spill))}

    reduced = ray.data.from_items([{"shard": s} for s in range(shards)]).map(reduce_row)
    results = sorted((r["result"] for r in reduced.take_all()), key=lambda r: r.shard)
    writer = pq.ParquetWriter(str(out_path), CURATED_SCHEMA, compression="zstd", store_schema=True)
    try:
        for result in results:
            _append_table(writer, result)
    finally:
        writer.close()
    return stages, results


def _read_ipc(path: str | None) -> pa.Table | None:
    if path is None:
        return None
    return ipc.open_file(pa.memory_map(path)).read_all()


def _write_quarantine(
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
    for stage, offset in zip(stages, _line_offsets(stages), strict=True):
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


def ingest_day(
    day: date,
    raw_uri: str,
    out_uri: str,
    feedback_uri: str | None = None,
    max_record_bytes: int = 1_000_000,
    max_quarantine_share: float = 1.0,
    feedback_horizon_days: int = 7,
    executor: str = "local",
    shards: int | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> IngestReport:
    """Validate, deduplicate, join feedback, redact and publish one day's curated partition.

    The output does not depend on ``executor``, ``workers`` or ``chunk_bytes``; it does on ``shards``
    (the curated rows are ordered by shard, then ``interaction_id``), which defaults to the day's size
    divided by ``SHARD_TARGET_BYTES``.
    """
    report = IngestReport(day=day.isoformat())
    file_quarantine: list[dict[str, Any]] = []
    raw_files: list[str] = []
    objects = storage.list_objects(_day_prefix(raw_uri, day))
    for obj in objects:
        name = storage.basename(obj.uri)
        if name.startswith(("_", ".")) and obj.size == 0:
            continue  # markers such as _SUCCESS
        if not name.endswith(RAW_SUFFIXES):
            file_quarantine.append(
                _quarantine_row(obj.uri, None, "file", "stray file: not .jsonl or .jsonl.gz", None)
            )
            report.skipped_files += 1
        elif obj.size == 0:
            file_quarantine.append(_quarantine_row(obj.uri, None, "file", "empty file", None))
            report.skipped_files += 1
        else:
            raw_files.append(obj.uri)
    report.files = len(raw_files)
    raw_objects = [o for o in objects if o.uri in raw_files]
    report.shards = shards or _plan_shards(raw_objects)
    if workers is None:  # processes pay off only for large days
        large = sum(o.size for o in raw_objects) > PARALLEL_MIN_BYTES
        workers = min(os.cpu_count() or 1, 4) if large else 1

    with tempfile.TemporaryDirectory(prefix="cl-ingest-") as tmp:
        spill = str(Path(tmp) / "spill")
        Path(spill).mkdir()
        feedback = stage_feedback(feedback_uri, day, feedback_horizon_days, report.shards, spill)
        report.feedback_read = feedback.read
        report.feedback_quarantined = feedback.quarantine.count
        chunks = plan_chunks(raw_objects, chunk_bytes)
        curated_path = Path(tmp) / "interactions.parquet"
        if executor == "ray":
            stages, results = _run_stages_ray(
                chunks, report.shards, spill, max_record_bytes, feedback, curated_path, ray_address
            )
        else:
            sizes = {o.uri: o.size for o in raw_objects}
            stages, results = _run_stages_local(
                chunks, sizes, report.shards, spill, max_record_bytes, feedback, curated_path, workers
            )

        # Counts, in the order the rows were found (the order of equal counts in quarantine_reasons).
        quarantines = [feedback.quarantine, *(s.quarantine for s in stages), *(r.quarantine for r in results)]
        reasons: Counter[str] = Counter(q["reason"].split(":")[0] for q in file_quarantine)
        redactions: Counter[str] = Counter()
        for stage in stages:
            report.read += stage.read
            report.blank_lines += stage.blank_lines
        for result in results:
            report.duplicates += result.duplicates
            report.conflicts += result.conflicts
            report.feedback_joined += result.feedback_joined
            report.feedback_unmatched += result.unmatched.count
            redactions.update(result.redactions)
        for part in quarantines:
            report.quarantined += part.records
            reasons.update(part.reasons)
        report.accepted = pq.ParquetFile(curated_path).metadata.num_rows
        report.redactions = dict(sorted(redactions.items()))
        report.quarantine_reasons = dict(reasons.most_common())
        if report.read != report.accepted + report.duplicates + report.quarantined:
            raise AssertionError(f"accounting broken for {day}: {report.as_dict()}")

        quarantine_prefix = _day_prefix(storage.join(out_uri, "quarantine"), day)
        quarantine_path = Path(tmp) / "records.parquet"
        _write_quarantine(quarantine_path, file_quarantine, feedback, stages, results)
        storage.commit_partition_files(
            quarantine_prefix, {"records.parquet": quarantine_path}, {"day": report.day}
        )
        report.quarantine_uri = quarantine_prefix

        share = report.quarantined / report.read if report.read else 0.0
        if share > max_quarantine_share:
            raise IngestError(
                f"{day}: {report.quarantined} of {report.read} records quarantined ({share:.1%}), above the "
                f"configured limit of {max_quarantine_share:.1%}; see {quarantine_prefix}. Top reasons: "
                f"{report.quarantine_reasons}"
            )
        curated_prefix = _day_prefix(storage.join(out_uri, "curated"), day)
        report.curated_uri = curated_prefix
        manifest = {
            "kind": "curated_partition",
            "schema_version": 1,
            "report": report.as_dict(),
            "inputs": [{"uri": o.uri, "size": o.size} for o in objects],
            "feedback_inputs": feedback.inputs,
            "feedback_horizon_days": feedback_horizon_days,
        }
        manifest_path = Path(tmp) / "manifest.json"
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
        storage.commit_partition_files(
            curated_prefix,
            {"interactions.parquet": curated_path, "manifest.json": manifest_path},
            {"day": report.day, "rows": report.accepted},
        )
    log.info("ingested %s: %s", day, json.dumps(report.as_dict()))
    return report


def read_curated(data_uri: str, day: date) -> pa.Table | None:
    """The committed curated table of ``day``, or None if that day was never ingested."""
    files = storage.partition_files(_day_prefix(storage.join(data_uri, "curated"), day))
    if "interactions.parquet" not in files:
        return None
    return pq.read_table(io.BytesIO(storage.read_bytes(files["interactions.parquet"])))
