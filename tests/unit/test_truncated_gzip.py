"""No complete record is lost when a file is cut off: truncated or corrupt gzip streams, plain files cut mid-line.

A line that was complete before the break is accepted, counted as a duplicate or quarantined with its reason;
the incomplete remainder is quarantined with its byte offset (in the decompressed stream for gzip files), and
``read == accepted + duplicates + quarantined`` holds at every cut. The reader is checked at every offset of
a small file; whole ingest runs at offsets that Hypothesis picks.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import tempfile
import zlib
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from continuous_learning import storage
from continuous_learning.data.ingest import _gunzip_blocks, _split_lines, ingest_day, read_curated
from continuous_learning.data.synthetic import make_interaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

DAY = date(2026, 11, 5)
# Modest example counts (the reader itself is checked at every offset below): the module runs in ~10 s.
_SETTINGS = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def _line(index: int, **changes: Any) -> bytes:
    record, _ = make_interaction(random.Random(index), DAY, index)
    record.update(changes)
    return json.dumps(record).encode()


# (line, kind): what becomes of each line when it is read whole
LINES: list[tuple[bytes, str]] = [
    (_line(0), "accepted"),
    (_line(1), "accepted"),
    (json.dumps({"schema_version": 1, "interaction_id": "no-agent", "messages": []}).encode(), "quarantined"),
    (_line(2), "accepted"),
    (_line(1), "duplicate"),
    (b'{"schema_version": 1, "interaction_id": "cut-by-the-writer', "quarantined"),
    (b"", "blank"),
    (_line(3) + b"\r", "accepted"),
    (_line(4, schema_version=2), "quarantined"),
    (_line(5), "accepted"),
    (_line(6), "accepted"),
]
DATA = b"".join(line + b"\n" for line, _ in LINES)
WHOLE = gzip.compress(DATA, mtime=0)


def _flushed(lines: list[bytes]) -> tuple[bytes, list[int]]:
    """A gzip stream flushed after each line, as a writer that is still running leaves it, and the
    compressed offset after each line's flush."""
    compressor = zlib.compressobj(wbits=31)
    out, flushed = b"", []
    for line in lines:
        out += compressor.compress(line + b"\n") + compressor.flush(zlib.Z_SYNC_FLUSH)
        flushed.append(len(out))
    return out + compressor.flush(), flushed


FLUSHED, FLUSH_POINTS = _flushed([line for line, _ in LINES])


def _decodable(compressed: bytes) -> bytes:
    """What zlib itself decompresses of a (possibly cut) gzip stream: the oracle."""
    return zlib.decompressobj(wbits=31).decompress(compressed)


def _read(compressed: bytes) -> list[tuple[int, bytes | None, Any]]:
    return list(_split_lines(_gunzip_blocks(io.BytesIO(compressed)), 0, True, ends=True))


def test_the_reader_keeps_every_complete_line_at_every_cut() -> None:
    for stream in (WHOLE, FLUSHED):
        for cut in range(len(stream) + 1):
            decodable = _decodable(stream[:cut])
            complete = decodable[: decodable.rfind(b"\n") + 1]
            lines = _read(stream[:cut])
            ordinary = [line or b"" for _, line, note in lines if note is None]
            assert b"".join(ordinary) == complete, cut  # every complete line, in order, whole
            if cut == len(stream):
                assert len(ordinary) == len(LINES)
                continue
            *_, (number, last, note) = lines
            assert note is not None and note.broken and number == len(ordinary) + 1
            assert f"byte {len(complete)} of the decompressed stream" in note.reason
            if last is not None:
                assert last == decodable[len(complete) :] and note.reason.startswith("truncated record: ")


def _salvaged(compressed: bytes) -> bytes:
    """What zlib decompresses of a corrupt stream fed one byte at a time, up to its error: the oracle."""
    decompressor, out = zlib.decompressobj(wbits=31), b""
    for position in range(len(compressed)):
        try:
            out += decompressor.decompress(compressed[position : position + 1])
        except zlib.error:
            break
    return out


def test_the_reader_keeps_every_line_decoded_before_a_corruption() -> None:
    """Where zlib detects the corruption inside the stream (not only at the checksum), the lines decoded before
    it are kept; :mod:`gzip` loses those of the whole read in which the error falls."""
    detected = 0
    for position in range(10, len(WHOLE), 3):
        stream = bytearray(WHOLE)
        stream[position] ^= 0xFF
        salvaged = _salvaged(bytes(stream))
        lines = _read(bytes(stream))
        ordinary = b"".join(line or b"" for _, line, note in lines if note is None)
        assert ordinary == salvaged[: salvaged.rfind(b"\n") + 1], position
        note = lines[-1][2]
        # a flipped bit may also make the stream look longer than the file (then: truncated)
        assert note is not None and note.broken and ("corrupt gzip stream: at compressed byte" in note.reason
                                                     or "truncated gzip stream" in note.reason)  # fmt: skip
        detected += "corrupt gzip stream" in note.reason and len(salvaged) < len(DATA)
    assert detected > 10


def test_the_five_complete_records_before_a_break_are_all_kept(tmp_path: Path) -> None:
    """The case of the issue: a .jsonl.gz cut off with 5 complete records before the break."""
    records = [_line(10 + i) for i in range(8)]
    stream, flush_points = _flushed(records)
    cut = (flush_points[4] + flush_points[5]) // 2  # inside the sixth record
    assert _decodable(stream[:cut]).count(b"\n") == 5
    folder = tmp_path / "raw" / f"dt={DAY}"
    folder.mkdir(parents=True)
    (folder / "part.jsonl.gz").write_bytes(stream[:cut])
    report = ingest_day(DAY, f"file://{tmp_path}/raw", f"file://{tmp_path}/data")
    assert (report.read, report.accepted, report.quarantined) == (6, 5, 1)
    [row] = _quarantine(f"file://{tmp_path}/data")
    assert row["source_line"] == 6 and row["kind"] == "record"
    assert row["reason"].startswith("truncated record: truncated gzip stream: the file ends after")
    offset = sum(len(record) + 1 for record in records[:5])
    assert f"line 6, which starts at byte {offset} of the decompressed stream" in row["reason"]


def _quarantine(out: str) -> list[dict[str, Any]]:
    files = storage.partition_files(storage.join(out, "quarantine", f"dt={DAY}"))
    return pq.read_table(io.BytesIO(storage.read_bytes(files["records.parquet"]))).to_pylist()


def _ingest(name: str, body: bytes, chunk_bytes: int | None = None) -> tuple[Any, list[dict], list[dict]]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "raw" / f"dt={DAY}"
        folder.mkdir(parents=True)
        (folder / name).write_bytes(body)
        raw, out = f"file://{tmp}/raw", f"file://{tmp}/data"
        report = (
            ingest_day(DAY, raw, out, chunk_bytes=chunk_bytes) if chunk_bytes else ingest_day(DAY, raw, out)
        )
        table = read_curated(f"file://{tmp}/data", DAY)
        assert table is not None
        return (
            report,
            table.select(["source_line", "interaction_id"]).to_pylist(),
            _quarantine(f"file://{tmp}/data"),
        )


def _check_survivors(
    report: Any, curated: list[dict], quarantine: list[dict], complete: bytes, rest: bytes
) -> None:
    """Every complete line became what it would have become in a whole file; the remainder is one record."""
    assert report.read == report.accepted + report.duplicates + report.quarantined
    count = complete.count(b"\n")
    accepted = {row["source_line"] for row in curated}
    quarantined = {row["source_line"]: row for row in quarantine if row["kind"] == "record"}
    kinds = [kind for _, kind in LINES[:count]]
    for number, kind in enumerate(kinds, start=1):
        if kind == "accepted":
            assert number in accepted, number
        elif kind == "quarantined":
            assert number in quarantined and quarantined[number]["reason"], number
    assert report.duplicates == kinds.count("duplicate")
    assert report.blank_lines == kinds.count("blank")
    assert report.read == count - kinds.count("blank") + (1 if rest.strip() else 0)
    if rest.strip():
        assert count + 1 in accepted | set(quarantined)


@_SETTINGS
@given(cut=st.integers(min_value=0, max_value=len(WHOLE) - 1), flushed=st.booleans())
def test_a_gzip_file_cut_anywhere_loses_no_complete_record(cut: int, flushed: bool) -> None:
    stream = (FLUSHED if flushed else WHOLE)[:cut]
    if not stream:
        return  # an empty file is skipped as such
    decodable = _decodable(stream)
    complete = decodable[: decodable.rfind(b"\n") + 1]
    if flushed:  # independent of zlib: every line flushed before the cut is complete
        assert complete.count(b"\n") >= sum(point <= cut for point in FLUSH_POINTS)
    report, curated, quarantine = _ingest("part.jsonl.gz", stream)
    rest = decodable[len(complete) :]
    _check_survivors(report, curated, quarantine, complete, rest)
    breaks = [row for row in quarantine if "gzip stream" in row["reason"]]
    assert len(breaks) == 1 and f"byte {len(complete)} of the decompressed stream" in breaks[0]["reason"]
    if rest.strip():
        assert breaks[0]["kind"] == "record" and breaks[0]["raw"] == rest.decode("utf-8", "replace")


@_SETTINGS
@given(cut=st.integers(min_value=1, max_value=len(DATA) - 1), chunk_bytes=st.sampled_from([None, 1500]))
def test_a_plain_file_cut_mid_line_loses_no_complete_record(cut: int, chunk_bytes: int | None) -> None:
    body = DATA[:cut]
    complete, rest = body[: body.rfind(b"\n") + 1], body[body.rfind(b"\n") + 1 :]
    report, curated, quarantine = _ingest("part.jsonl", body, chunk_bytes)
    _check_survivors(report, curated, quarantine, complete, rest)
    last = [row for row in quarantine if row["source_line"] == complete.count(b"\n") + 1]
    if last and last[0]["reason"].startswith("malformed JSON"):  # the remainder says where the file was cut
        assert f"byte {len(complete)} of the file" in last[0]["reason"]


@_SETTINGS
@given(
    position=st.integers(min_value=10, max_value=len(WHOLE) - 9), flip=st.integers(min_value=1, max_value=255)
)
def test_a_corrupt_gzip_file_keeps_what_precedes_the_corruption(position: int, flip: int) -> None:
    stream = bytearray(WHOLE)
    stream[position] ^= flip
    report, _, quarantine = _ingest("part.jsonl.gz", bytes(stream))
    assert report.read == report.accepted + report.duplicates + report.quarantined
    try:
        zlib.decompress(bytes(stream), wbits=31)
    except zlib.error:
        assert any(row["reason"].split(":")[0] in ("corrupt gzip stream", "truncated record", "truncated gzip stream")
                   or "gzip stream" in row["reason"] for row in quarantine)  # fmt: skip
