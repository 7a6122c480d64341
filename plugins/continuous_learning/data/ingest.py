"""Ingest one day of raw interaction logs into a curated partition, streaming with bounded memory.

Two stages, each a plain function over files and Arrow batches:

1. :func:`stage_file` streams one raw file line by line, validates each record (schema v1),
   quarantines what is bad, and spills the good lines into shards by a hash of ``interaction_id``;
2. :func:`reduce_shard` deduplicates one shard (every copy of an id lands in the same shard), joins
   feedback, redacts PII and returns curated rows.

Memory is bounded by the shard size, not the day's size. Locally the stages run in a loop; with
``executor="ray"`` the same functions run as Ray Data maps on a Ray cluster. Every line read is
accounted for: ``read == accepted + duplicates + quarantined``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import math
import multiprocessing
import os
import tempfile
import zlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Any

import msgspec
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from continuous_learning import storage
from continuous_learning.data.pii import Redactor
from continuous_learning.data.schema import (
    CURATED_SCHEMA,
    KNOWN_FIELDS,
    QUARANTINE_SCHEMA,
    RecordError,
    decode_interaction,
    decode_late_feedback,
    to_builtins,
)

log = logging.getLogger(__name__)
RAW_SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz", ".ndjson", ".ndjson.gz")
SHARD_TARGET_BYTES = 96 * 1024 * 1024  # uncompressed input per shard; bounds peak memory
PARALLEL_MIN_BYTES = 256 * 1024 * 1024
_GZIP_RATIO = 6  # planning estimate of compressed -> raw size
_RAW_KEEP = 65_536  # bytes of an over-size line kept in quarantine
_SPILL_ROWS = 4096
_SPILL_SCHEMA = pa.schema(
    [
        ("interaction_id", pa.string()),
        ("sha", pa.string()),
        ("file", pa.int32()),
        ("line", pa.int64()),
        ("raw", pa.binary()),
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


def _open_lines(uri: str) -> IO[bytes]:
    stream = storage.store_for(uri).open_read(uri)
    if uri.endswith(".gz"):
        return gzip.GzipFile(fileobj=stream)  # type: ignore[return-value]
    return stream


def iter_lines(uri: str) -> Iterator[tuple[int, bytes | None, str | None]]:
    """(line number, line, error). A broken gzip stream yields one error after its good lines."""
    number = 0
    try:
        with _open_lines(uri) as stream:
            for line in stream:
                number += 1
                yield number, line, None
    except (EOFError, OSError, zlib.error) as exc:
        yield number + 1, None, f"truncated or corrupt gzip stream after line {number}: {exc}"


def _quarantine_row(
    uri: str, line: int | None, kind: str, reason: str, raw: bytes | str | None
) -> dict[str, Any]:
    if isinstance(raw, bytes):
        raw = raw[:_RAW_KEEP].decode("utf-8", "replace")
    return {"source_uri": uri, "source_line": line, "kind": kind, "reason": reason, "raw": raw}


class _ShardWriter:
    """Appends rows to one Arrow IPC file per shard, in batches."""

    def __init__(self, directory: Path, prefix: str, shards: int, schema: pa.Schema) -> None:
        self.paths = [directory / f"{prefix}-{i:05d}.arrow" for i in range(shards)]
        self.schema = schema
        self.buffers: list[list[dict[str, Any]]] = [[] for _ in range(shards)]
        self.writers: dict[int, Any] = {}

    def add(self, shard: int, row: dict[str, Any]) -> None:
        buffer = self.buffers[shard]
        buffer.append(row)
        if len(buffer) >= _SPILL_ROWS:
            self._flush(shard)

    def _flush(self, shard: int) -> None:
        if not self.buffers[shard]:
            return
        if shard not in self.writers:
            self.writers[shard] = ipc.new_file(str(self.paths[shard]), self.schema)
        self.writers[shard].write_batch(pa.RecordBatch.from_pylist(self.buffers[shard], schema=self.schema))
        self.buffers[shard] = []

    def close(self) -> dict[int, str]:
        for shard in range(len(self.buffers)):
            self._flush(shard)
        for writer in self.writers.values():
            writer.close()
        return {shard: str(self.paths[shard]) for shard in self.writers}


@dataclass
class FileStage:
    uri: str
    read: int = 0
    blank_lines: int = 0
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    shard_files: dict[int, str] = field(default_factory=dict)


def stage_file(uri: str, file_index: int, shards: int, spill_dir: str, max_record_bytes: int) -> FileStage:
    """Validate one raw file; spill good lines into shards by ``interaction_id``."""
    stage = FileStage(uri)
    writer = _ShardWriter(Path(spill_dir), f"raw-{file_index:05d}", shards, _SPILL_SCHEMA)
    for number, line, error in iter_lines(uri):
        if line is None:
            stage.quarantine.append(_quarantine_row(uri, number, "file", error or "unreadable", None))
            continue
        if not line.strip():
            stage.blank_lines += 1
            continue
        stage.read += 1
        line = line.rstrip(b"\r\n")
        if len(line) > max_record_bytes:
            reason = f"record of {len(line)} bytes exceeds the {max_record_bytes}-byte limit"
            stage.quarantine.append(_quarantine_row(uri, number, "record", reason, line))
            continue
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            stage.quarantine.append(
                _quarantine_row(uri, number, "record", f"invalid UTF-8 at byte {exc.start}", line)
            )
            continue
        try:
            record, generic = decode_interaction(line)
        except RecordError as exc:
            stage.quarantine.append(_quarantine_row(uri, number, "record", str(exc), line))
            continue
        sha = hashlib.sha256(_ENCODER.encode(generic)).hexdigest()
        row = {
            "interaction_id": record.interaction_id,
            "sha": sha,
            "file": file_index,
            "line": number,
            "raw": line,
        }
        writer.add(shard_of(record.interaction_id, shards), row)
    stage.shard_files = writer.close()
    return stage


@dataclass
class FeedbackStage:
    read: int = 0
    inputs: list[dict[str, Any]] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    shard_files: dict[int, str] = field(default_factory=dict)


def stage_feedback(
    feedback_uri: str | None, day: date, horizon_days: int, shards: int, spill_dir: str
) -> FeedbackStage:
    """Spill feedback of ``dt=day .. dt=day+horizon`` into shards; bad lines of ``dt=day`` are quarantined."""
    stage = FeedbackStage()
    if not feedback_uri:
        return stage
    writer = _ShardWriter(Path(spill_dir), "feedback", shards, _FEEDBACK_SCHEMA)
    for offset in range(horizon_days + 1):
        same_day = offset == 0
        for obj in storage.list_objects(_day_prefix(feedback_uri, day + timedelta(days=offset))):
            stage.inputs.append({"uri": obj.uri, "size": obj.size})
            for number, line, error in iter_lines(obj.uri):
                if line is not None and not line.strip():
                    continue
                stage.read += same_day
                try:
                    if line is None:
                        raise RecordError(error or "unreadable")
                    event = decode_late_feedback(line.rstrip(b"\r\n"))
                except RecordError as exc:
                    if same_day:
                        stage.quarantine.append(_quarantine_row(obj.uri, number, "feedback", str(exc), line))
                    continue
                assert event.interaction_id is not None
                row = {
                    "interaction_id": event.interaction_id,
                    "same_day": same_day,
                    "uri": obj.uri,
                    "line": number,
                    "raw": line,
                }
                writer.add(shard_of(event.interaction_id, shards), row)
    stage.shard_files = writer.close()
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
    """Redact the free-text fields of chat messages in place: content and tool-call arguments."""
    for message in messages:
        if message.get("content"):
            message["content"] = redactor.redact(message["content"])
        for call in message.get("tool_calls") or []:
            call["function"]["arguments"] = redactor.redact(call["function"]["arguments"])
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
    unique: dict[str, dict[str, Any]] = {}
    for event in events:
        event = {k: v for k, v in event.items() if k != "interaction_id"}
        unique.setdefault(json.dumps(event, sort_keys=True), event)
    return sorted(unique.values(), key=lambda e: (e["timestamp"], e["type"], json.dumps(e, sort_keys=True)))


def _read_arrow(paths: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in paths:
        with pa.memory_map(path) as source:
            rows.extend(ipc.open_file(source).read_all().to_pylist())
    return rows


@dataclass
class ShardResult:
    shard: int
    table: pa.Table
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    conflicts: int = 0
    feedback_joined: int = 0
    unmatched: list[dict[str, Any]] = field(default_factory=list)
    redactions: dict[str, int] = field(default_factory=dict)


def reduce_shard(
    shard: int, raw_files: list[str], feedback_files: list[str], file_uris: list[str]
) -> ShardResult:
    """Deduplicate one shard, join its feedback, redact PII; rows sorted by ``interaction_id``."""
    result = ShardResult(shard, CURATED_SCHEMA.empty_table())
    staged = sorted(_read_arrow(raw_files), key=lambda r: (r["file"], r["line"]))
    first_by_id: dict[str, dict[str, Any]] = {}
    hashes: dict[str, set[str]] = {}
    conflicted: dict[str, list[str]] = {}
    for row in staged:
        key = row["interaction_id"]
        seen = hashes.setdefault(key, set())
        if row["sha"] in seen:
            result.duplicates += 1
            continue
        seen.add(row["sha"])
        source = f"{file_uris[row['file']]}:{row['line']}"
        if key in first_by_id or key in conflicted:
            sources = conflicted.setdefault(key, [])
            if key in first_by_id:
                first = first_by_id.pop(key)
                sources.append(f"{file_uris[first['file']]}:{first['line']}")
                result.conflicts += 1
                conflicted_rows = [first]
            else:
                conflicted_rows = []
            sources.append(source)
            conflicted_rows.append(row)
            for bad in conflicted_rows:
                result.quarantine.append(
                    _quarantine_row(file_uris[bad["file"]], bad["line"], "record", "", bad["raw"])
                    | {"_id": key}
                )
            continue
        first_by_id[key] = row
    for entry in result.quarantine:  # name every source of a conflict, known only at the end
        key = entry.pop("_id")
        entry["reason"] = (
            f"conflicting duplicate: interaction_id {key!r} has different content in {', '.join(conflicted[key])}"
        )

    feedback_by_id: dict[str, list[dict[str, Any]]] = {}
    for row in _read_arrow(feedback_files):
        feedback_by_id.setdefault(row["interaction_id"], []).append(row)
        if row["same_day"] and row["interaction_id"] not in first_by_id:
            body = msgspec.json.decode(row["raw"])
            result.unmatched.append(
                _quarantine_row(
                    row["uri"], row["line"], "unmatched_feedback",
                    f"feedback for interaction {row['interaction_id']!r}, not among this day's interactions; "
                    "kept for reprocessing of its day",
                    json.dumps(body, sort_keys=True),
                )
            )  # fmt: skip

    redactor = Redactor()
    rows = []
    for key in sorted(first_by_id):
        item = first_by_id[key]
        record, generic = decode_interaction(item["raw"])
        late = [msgspec.json.decode(f["raw"]) for f in feedback_by_id.get(key, [])]
        result.feedback_joined += len(late)
        events = _dedupe_events([to_builtins(e) for e in record.feedback or []] + late)
        corrections = [e for e in events if e["type"] == "correction"]
        messages_json = _dumps(_redact_messages(to_builtins(record.messages), redactor))
        events = _redact_tree(events, redactor)
        correction = corrections[-1]["content"] if corrections else None
        metadata = {k: v for k, v in generic.items() if k not in KNOWN_FIELDS}
        rows.append(
            {
                "interaction_id": key,
                "timestamp": record.timestamp,
                "agent": record.agent,
                "model_version": record.model_version,
                "session_id": record.session_id,
                "messages_json": messages_json,
                "tools_json": _dumps(record.tools) if record.tools is not None else None,
                "outcome_json": _dumps(generic["outcome"]) if record.outcome is not None else None,
                "feedback_json": _dumps(events),
                "feedback_score": _feedback_score(events),
                "correction_json": _dumps(_redact_tree(correction, redactor))
                if correction is not None
                else None,
                "metadata_json": _dumps(_redact_tree(metadata, redactor)),
                "source_uri": file_uris[item["file"]],
                "source_line": item["line"],
                "content_sha256": item["sha"],
            }
        )
    result.table = pa.Table.from_pylist(rows, schema=CURATED_SCHEMA)
    result.redactions = dict(redactor.counts)
    return result


def _plan_shards(objects: list[storage.ObjectInfo]) -> int:
    raw_bytes = sum(o.size * (_GZIP_RATIO if o.uri.endswith(".gz") else 1) for o in objects)
    return max(1, math.ceil(raw_bytes / SHARD_TARGET_BYTES))


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", store_schema=True)
    return sink.getvalue()


def _reduce_args(
    shard: int, stages: list[FileStage], feedback: FeedbackStage, raw_files: list[str]
) -> tuple[Any, ...]:
    raw_parts = [st.shard_files[shard] for st in stages if shard in st.shard_files]
    fb_parts = [feedback.shard_files[shard]] if shard in feedback.shard_files else []
    return shard, raw_parts, fb_parts, raw_files


def _run_stages_local(
    raw_files: list[str],
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
    try:
        if workers > 1:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                stages = list(
                    pool.map(stage_file, raw_files, range(len(raw_files)), [shards] * len(raw_files),
                             [spill] * len(raw_files), [max_record_bytes] * len(raw_files))
                )  # fmt: skip
                futures = [
                    pool.submit(reduce_shard, *_reduce_args(s, stages, feedback, raw_files))
                    for s in range(shards)
                ]
                for future in futures:  # in shard order: the output's row order is deterministic
                    result = future.result()
                    writer.write_table(result.table)
                    result.table = CURATED_SCHEMA.empty_table()
                    results.append(result)
        else:
            stages = [stage_file(uri, i, shards, spill, max_record_bytes) for i, uri in enumerate(raw_files)]
            for shard in range(shards):
                result = reduce_shard(*_reduce_args(shard, stages, feedback, raw_files))
                writer.write_table(result.table)
                result.table = CURATED_SCHEMA.empty_table()  # written: free the rows
                results.append(result)
    finally:
        writer.close()
    return stages, results


def _run_stages_ray(
    raw_files: list[str],
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
        return {"stage": stage_file(item["uri"], item["index"], shards, spill, max_record_bytes)}

    staged = ray.data.from_items([{"uri": u, "index": i} for i, u in enumerate(raw_files)]).map(stage_row)
    stages = sorted((r["stage"] for r in staged.take_all()), key=lambda s: raw_files.index(s.uri))

    def reduce_row(item: dict[str, Any]) -> dict[str, Any]:
        return {"result": reduce_shard(*_reduce_args(item["shard"], stages, feedback, raw_files))}

    reduced = ray.data.from_items([{"shard": s} for s in range(shards)]).map(reduce_row)
    results = sorted((r["result"] for r in reduced.take_all()), key=lambda r: r.shard)
    writer = pq.ParquetWriter(str(out_path), CURATED_SCHEMA, compression="zstd", store_schema=True)
    try:
        for result in results:
            writer.write_table(result.table)
    finally:
        writer.close()
    return stages, results


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
) -> IngestReport:
    """Validate, deduplicate, join feedback, redact and publish one day's curated partition."""
    report = IngestReport(day=day.isoformat())
    quarantine: list[dict[str, Any]] = []
    raw_files: list[str] = []
    objects = storage.list_objects(_day_prefix(raw_uri, day))
    for obj in objects:
        name = storage.basename(obj.uri)
        if name.startswith(("_", ".")) and obj.size == 0:
            continue  # markers such as _SUCCESS
        if not name.endswith(RAW_SUFFIXES):
            quarantine.append(
                _quarantine_row(obj.uri, None, "file", "stray file: not .jsonl or .jsonl.gz", None)
            )
            report.skipped_files += 1
        elif obj.size == 0:
            quarantine.append(_quarantine_row(obj.uri, None, "file", "empty file", None))
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
        report.feedback_quarantined = len(feedback.quarantine)
        quarantine += feedback.quarantine
        curated_path = Path(tmp) / "interactions.parquet"
        if executor == "ray":
            stages, results = _run_stages_ray(
                raw_files, report.shards, spill, max_record_bytes, feedback, curated_path, ray_address
            )
        else:
            stages, results = _run_stages_local(
                raw_files, report.shards, spill, max_record_bytes, feedback, curated_path, workers
            )

        redactions: Counter[str] = Counter()
        for stage in stages:
            report.read += stage.read
            report.blank_lines += stage.blank_lines
            quarantine += stage.quarantine
        for result in results:
            report.duplicates += result.duplicates
            report.conflicts += result.conflicts
            report.feedback_joined += result.feedback_joined
            report.feedback_unmatched += len(result.unmatched)
            quarantine += result.quarantine
            redactions.update(result.redactions)
        report.accepted = pq.ParquetFile(curated_path).metadata.num_rows
        report.quarantined = sum(1 for q in quarantine if q["kind"] == "record")
        report.redactions = dict(sorted(redactions.items()))
        report.quarantine_reasons = dict(Counter(q["reason"].split(":")[0] for q in quarantine).most_common())
        if report.read != report.accepted + report.duplicates + report.quarantined:
            raise AssertionError(f"accounting broken for {day}: {report.as_dict()}")

        unmatched = [u for r in results for u in r.unmatched]
        quarantine.sort(key=lambda q: (q["source_uri"], q["source_line"] or 0, q["reason"]))
        quarantine_prefix = _day_prefix(storage.join(out_uri, "quarantine"), day)
        table = pa.Table.from_pylist(quarantine + sorted(unmatched, key=lambda q: (q["source_uri"], q["source_line"])),
                                     schema=QUARANTINE_SCHEMA)  # fmt: skip
        storage.commit_partition(
            quarantine_prefix, {"records.parquet": _parquet_bytes(table)}, {"day": report.day}
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
