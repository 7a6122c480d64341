"""Ingest one day of raw interaction logs into a curated partition.

Every line read is accounted for: ``read == accepted + duplicates + quarantined``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from continuous_learning import storage
from continuous_learning.data.pii import Redactor
from continuous_learning.data.schema import (
    CURATED_SCHEMA,
    QUARANTINE_SCHEMA,
    SUPPORTED_SCHEMA_VERSIONS,
    InteractionV1,
    LateFeedbackEvent,
    describe_validation_error,
)
from pydantic import ValidationError

log = logging.getLogger(__name__)
RAW_SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz", ".ndjson")


class IngestError(RuntimeError):
    """The day cannot be ingested (for example: too large a share of bad records)."""


@dataclass
class Quarantined:
    source_uri: str
    source_line: int | None
    kind: str
    reason: str
    raw: str | None


@dataclass
class _Accepted:
    record: InteractionV1
    source_uri: str
    source_line: int
    content_sha256: str


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


def _read_lines(uri: str, data: bytes) -> Iterator[tuple[int, bytes | None, str | None]]:
    """Yield (line number, line, error). A broken gzip stream yields one error after the good lines."""
    if uri.endswith(".gz"):
        stream: io.BufferedIOBase = gzip.GzipFile(fileobj=io.BytesIO(data))
    else:
        stream = io.BytesIO(data)
    number = 0
    try:
        for line in stream:
            number += 1
            yield number, line, None
    except (EOFError, OSError, zlib.error) as exc:
        yield number + 1, None, f"truncated or corrupt gzip stream after line {number}: {exc}"


def _classify(line: bytes, max_bytes: int) -> tuple[InteractionV1 | None, str | None, str | None]:
    """Parse and validate one line. Returns (record, text, reason-if-rejected)."""
    if len(line) > max_bytes:
        return None, None, f"record of {len(line)} bytes exceeds the {max_bytes}-byte limit"
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, None, f"invalid UTF-8 at byte {exc.start}"
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, text, f"malformed JSON: {exc.msg} at column {exc.colno}"
    if not isinstance(obj, dict):
        return None, text, f"a record must be a JSON object, got {type(obj).__name__}"
    version = obj.get("schema_version")
    known = isinstance(version, bool) or not isinstance(version, int) or version in SUPPORTED_SCHEMA_VERSIONS
    if not known:
        supported = ", ".join(map(str, SUPPORTED_SCHEMA_VERSIONS))
        return None, text, f"unsupported schema_version {version} (this code reads: {supported})"
    try:
        return InteractionV1.model_validate(obj), text, None
    except ValidationError as exc:
        return None, text, f"schema v1 violation: {describe_validation_error(exc)}"


def _content_hash(text: str) -> str:
    canonical = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _redact_tree(value: Any, redactor: Redactor) -> Any:
    if isinstance(value, str):
        return redactor.redact(value)
    if isinstance(value, list):
        return [_redact_tree(v, redactor) for v in value]
    if isinstance(value, dict):
        return {
            k: v if k in ("id", "tool_call_id", "role", "type", "name") else _redact_tree(v, redactor)
            for k, v in value.items()
        }
    return value


def _feedback_score(events: list[dict[str, Any]]) -> float | None:
    signals = []
    for event in events:
        if event["type"] == "thumbs":
            signals.append(float(event["value"]))
        elif event["type"] == "rating":
            signals.append((event["value"] - 3) / 2)
    return sum(signals) / len(signals) if signals else None


def _load_late_feedback(
    feedback_uri: str | None,
    day: date,
    horizon_days: int,
    report: IngestReport,
    quarantine: list[Quarantined],
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Feedback events under ``dt=day .. dt=day+horizon``; malformed lines of ``dt=day`` are quarantined."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    same_day: list[dict[str, Any]] = []
    if not feedback_uri:
        return by_id, same_day
    for offset in range(horizon_days + 1):
        arrival = day + timedelta(days=offset)
        for obj in storage.list_objects(_day_prefix(feedback_uri, arrival)):
            data = storage.read_bytes(obj.uri)
            for number, line, error in _read_lines(obj.uri, data):
                if line is not None and not line.strip():
                    continue
                if offset == 0:
                    report.feedback_read += 1
                try:
                    if error is not None or line is None:
                        raise ValueError(error)
                    event = LateFeedbackEvent.model_validate_json(line)
                except (ValueError, ValidationError) as exc:
                    if offset == 0:
                        reason = (
                            describe_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
                        )
                        quarantine.append(
                            Quarantined(
                                obj.uri,
                                number,
                                "feedback",
                                f"invalid feedback: {reason}",
                                None if line is None else line.decode("utf-8", "replace"),
                            )
                        )
                        report.feedback_quarantined += 1
                    continue
                entry = event.model_dump(mode="json", exclude_none=True)
                entry["arrived"] = arrival.isoformat()
                entry["_source"] = (obj.uri, number, offset == 0)
                by_id.setdefault(event.interaction_id, []).append(entry)
                if offset == 0:
                    same_day.append(entry)
    return by_id, same_day


def _write_parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", write_statistics=True, store_schema=True)
    return sink.getvalue()


def ingest_day(
    day: date,
    raw_uri: str,
    out_uri: str,
    feedback_uri: str | None = None,
    max_record_bytes: int = 1_000_000,
    max_quarantine_share: float = 1.0,
    feedback_horizon_days: int = 7,
) -> IngestReport:
    """Validate, deduplicate, join feedback, redact and write one day's curated partition."""
    report = IngestReport(day=day.isoformat())
    quarantine: list[Quarantined] = []
    accepted: dict[str, _Accepted] = {}
    conflicted: dict[str, list[str]] = {}
    seen_hashes: dict[str, set[str]] = {}

    objects = storage.list_objects(_day_prefix(raw_uri, day))
    for obj in objects:
        name = storage.basename(obj.uri)
        if name.startswith(("_", ".")) and obj.size == 0:
            continue  # markers such as _SUCCESS
        if not name.endswith(RAW_SUFFIXES):
            quarantine.append(Quarantined(obj.uri, None, "file", "stray file: not .jsonl or .jsonl.gz", None))
            report.skipped_files += 1
            continue
        if obj.size == 0:
            quarantine.append(Quarantined(obj.uri, None, "file", "empty file", None))
            report.skipped_files += 1
            continue
        report.files += 1
        for number, line, error in _read_lines(obj.uri, storage.read_bytes(obj.uri)):
            if line is None:
                quarantine.append(Quarantined(obj.uri, number, "file", error or "unreadable", None))
                continue
            if not line.strip():
                report.blank_lines += 1
                continue
            report.read += 1
            record, text, reason = _classify(line.rstrip(b"\r\n"), max_record_bytes)
            if record is None or text is None:
                raw = text if text is not None else line[:2000].decode("utf-8", "replace")
                quarantine.append(Quarantined(obj.uri, number, "record", reason or "invalid", raw))
                continue
            digest = _content_hash(text)
            key = record.interaction_id
            hashes = seen_hashes.setdefault(key, set())
            if digest in hashes:
                report.duplicates += 1
                continue
            hashes.add(digest)
            source = f"{obj.uri}:{number}"
            if key in conflicted:
                conflicted[key].append(source)
                quarantine.append(
                    Quarantined(obj.uri, number, "record", _conflict_reason(key, conflicted[key]), text)
                )
                continue
            if key in accepted:
                first = accepted.pop(key)
                first_source = f"{first.source_uri}:{first.source_line}"
                conflicted[key] = [first_source, source]
                reason = _conflict_reason(key, conflicted[key])
                quarantine.append(
                    Quarantined(
                        first.source_uri,
                        first.source_line,
                        "record",
                        reason,
                        first.record.model_dump_json(exclude_none=True),
                    )
                )
                quarantine.append(Quarantined(obj.uri, number, "record", reason, text))
                report.conflicts += 1
                continue
            accepted[key] = _Accepted(record, obj.uri, number, digest)

    feedback_by_id, same_day_feedback = _load_late_feedback(
        feedback_uri, day, feedback_horizon_days, report, quarantine
    )
    unmatched = [e for e in same_day_feedback if e["interaction_id"] not in accepted]
    report.feedback_unmatched = len(unmatched)

    redactor = Redactor()
    rows = []
    for key in sorted(accepted):
        item = accepted[key]
        record = item.record
        events = [e.model_dump(mode="json", exclude_none=True) for e in record.feedback or []]
        late = [{k: v for k, v in e.items() if k != "_source"} for e in feedback_by_id.get(key, [])]
        report.feedback_joined += len(late)
        events = _dedupe_events(events + late)
        corrections = [e for e in events if e["type"] == "correction"]
        messages = _redact_tree([m.model_dump(exclude_none=True) for m in record.messages], redactor)
        events = _redact_tree(events, redactor)
        correction = _redact_tree(corrections[-1]["content"], redactor) if corrections else None
        rows.append(
            {
                "interaction_id": key,
                "timestamp": record.timestamp,
                "agent": record.agent,
                "model_version": record.model_version,
                "session_id": record.session_id,
                "messages_json": json.dumps(messages, sort_keys=True),
                "tools_json": json.dumps(record.tools, sort_keys=True) if record.tools is not None else None,
                "outcome_json": record.outcome.model_dump_json() if record.outcome else None,
                "feedback_json": json.dumps(events, sort_keys=True),
                "feedback_score": _feedback_score(events),
                "correction_json": json.dumps(correction, sort_keys=True) if correction is not None else None,
                "metadata_json": json.dumps(_redact_tree(record.metadata(), redactor), sort_keys=True),
                "source_uri": item.source_uri,
                "source_line": item.source_line,
                "content_sha256": item.content_sha256,
            }
        )

    report.accepted = len(rows)
    report.quarantined = sum(1 for q in quarantine if q.kind == "record")
    report.redactions = dict(sorted(redactor.counts.items()))
    report.quarantine_reasons = dict(Counter(q.reason.split(":")[0] for q in quarantine).most_common())
    if report.read != report.accepted + report.duplicates + report.quarantined:
        raise AssertionError(f"accounting broken for {day}: {report.as_dict()}")

    quarantine_prefix = _day_prefix(storage.join(out_uri, "quarantine"), day)
    quarantine_table = pa.Table.from_pylist(
        [q.__dict__ for q in quarantine] + [_unmatched_entry(e) for e in unmatched], schema=QUARANTINE_SCHEMA
    )
    storage.commit_partition(
        quarantine_prefix, {"records.parquet": _write_parquet(quarantine_table)}, {"day": report.day}
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
    table = pa.Table.from_pylist(rows, schema=CURATED_SCHEMA)
    report.curated_uri = curated_prefix
    manifest = {
        "kind": "curated_partition",
        "schema_version": 1,
        "report": report.as_dict(),
        "inputs": [{"uri": o.uri, "size": o.size} for o in objects],
    }
    storage.commit_partition(
        curated_prefix,
        {
            "interactions.parquet": _write_parquet(table),
            "manifest.json": json.dumps(manifest, indent=2, sort_keys=True).encode(),
        },
        {"day": report.day, "rows": report.accepted},
    )
    report.curated_uri = curated_prefix
    log.info("ingested %s: %s", day, json.dumps(report.as_dict()))
    return report


def _conflict_reason(key: str, sources: list[str]) -> str:
    return f"conflicting duplicate: interaction_id {key!r} has different content in {', '.join(sources)}"


def _unmatched_entry(event: dict[str, Any]) -> dict[str, Any]:
    source_uri, line, _ = event["_source"]
    body = {k: v for k, v in event.items() if k != "_source"}
    return {
        "source_uri": source_uri,
        "source_line": line,
        "kind": "unmatched_feedback",
        "reason": f"feedback for interaction {event['interaction_id']!r}, not among this day's interactions; "
        "kept for reprocessing of its day",
        "raw": json.dumps(body, sort_keys=True),
    }


def _dedupe_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen = set()
    unique = []
    for event in events:
        event = {k: v for k, v in event.items() if k not in ("arrived", "interaction_id")}
        key = json.dumps(event, sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append(event)
    return sorted(unique, key=lambda e: (e["timestamp"], e["type"]))


def read_curated(data_uri: str, day: date) -> pa.Table | None:
    """The committed curated table of ``day``, or None if that day was never ingested."""
    files = storage.partition_files(_day_prefix(storage.join(data_uri, "curated"), day))
    if "interactions.parquet" not in files:
        return None
    return pq.read_table(io.BytesIO(storage.read_bytes(files["interactions.parquet"])))
