"""Reading raw files: a day's prefix, lines of plain and gzip files (every byte before a break kept, the
break described), and the plan that cuts large uncompressed local files into chunks at line starts."""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import IO, Any

from continuous_learning import storage

RAW_SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz", ".ndjson", ".ndjson.gz")
CHUNK_BYTES = 64 * 1024 * 1024  # large uncompressed local files are staged in pieces of about this size
_READ_BLOCK = 4 * 1024 * 1024
_GZIP_READ_BLOCK = 256 * 1024  # compressed bytes per step; a corrupt step is searched for its last good byte


def day_prefix(base: str, day: date) -> str:
    """The ``dt=YYYY-MM-DD`` partition of ``day`` under ``base``."""
    return storage.join(base, f"dt={day.isoformat()}")


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


def gunzip_blocks(stream: IO[bytes]) -> Iterator[bytes]:
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


def split_lines(blocks: Iterator[bytes], start: int, gzip_stream: bool, ends: bool) -> Iterator[Line]:
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
        blocks = gunzip_blocks(stream) if gzip_stream else _raw_blocks(stream)
        yield from split_lines(blocks, 0, gzip_stream, ends=True)


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
        yield from split_lines(_local_blocks(stream, -1 if end is None else end - start), start, False, False)


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
