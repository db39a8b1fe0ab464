"""Reading the raw CSV: the dataset fingerprint and a chunk reader shared by every mode.

Both modes read through :class:`ChunkReader`: batch takes every record in one chunk,
streaming takes ``chunk_size`` records at a time.  Records are kept as raw bytes until they
are parsed, so each chunk knows exactly how many input bytes it holds, and a chunk that has
to be split can hand records back to the reader unparsed.  Every parsed row keeps its
1-based line number in the file as its index, which is how quarantined rows are reported
and why batch and streaming outputs can be compared row by row.

Bad input is handled here as far as bytes and records go: the file is decoded with the
configured encoding (UTF-8 by default, a byte-order mark allowed) and records in any other
encoding are transcoded to UTF-8 as they are read; a byte that does not decode is reported
with its line and byte offset before any work.  A record that is not one row of exactly as
many fields as the header (a truncated last line, a stray separator) does not stop the run:
it is parsed into a row whose :data:`RECORD_ERROR` column says what is wrong, and cleaning
quarantines it.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import hashlib
import io
import logging
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from .errors import InputDataError

logger = logging.getLogger(__name__)

_HASH_BLOCK = 1 << 20
_THREADED_ROWS = 50_000
_SMALL_CHUNK_ROWS = 2_048
UTF8 = "utf-8"
# Present in a parsed chunk only when one of its records is malformed: the reason for each
# row ("" when the record is fine).  No header of a CSV export can hold this name.
RECORD_ERROR = "\x00record_error"
# The standard library refuses fields over 128 KiB, which Arrow reads: one limit for both
# parsers keeps a chunk's rows the same whichever of them reads it.
_FIELD_LIMIT = 1 << 30
if csv.field_size_limit() < _FIELD_LIMIT:
    csv.field_size_limit(_FIELD_LIMIT)


@dataclass(frozen=True)
class InputSource:
    """Where the raw table comes from: a file on disk or CSV bytes held in memory.

    ``encoding`` is the text encoding of the bytes; records are handed on as UTF-8 whatever
    it is (see :meth:`open_utf8`).
    """

    name: str
    path: Path | None = None
    data: bytes | None = None
    encoding: str = UTF8

    @classmethod
    def from_path(cls, path: str | Path, encoding: str = UTF8) -> InputSource:
        """A CSV file; fails with a clear message when it is missing or not a file."""
        path = Path(path)
        if not path.exists():
            raise InputDataError(
                f"input file {path} does not exist; check the path given to --input"
            )
        if not path.is_file():
            raise InputDataError(f"input path {path} is not a file; give --input a CSV file")
        return cls(name=str(path), path=path, encoding=_canonical(encoding))

    @property
    def is_utf8(self) -> bool:
        return self.encoding == UTF8

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> InputSource:
        """A DataFrame, serialised once to CSV so that it goes through the same reader."""
        data = frame.to_csv(index=False, lineterminator="\n").encode("utf-8")
        return cls(name="<DataFrame>", data=data)

    def open(self) -> io.BufferedIOBase:
        """A fresh binary stream positioned at the first byte of the table."""
        if self.data is not None:
            return io.BytesIO(self.data)
        try:
            return self.path.open("rb")
        except OSError as exc:
            raise InputDataError(
                f"input file {self.path} cannot be read: {exc.strerror}; check its permissions"
            ) from None

    def open_utf8(self):
        """A binary stream of the table's text as UTF-8, whatever its encoding.

        Only ``readline`` and ``close`` are promised.  UTF-8 input is the file itself;
        anything else is decoded with :attr:`encoding` and re-encoded line by line.
        """
        stream = self.open()
        return stream if self.is_utf8 else _Utf8Lines(stream, self)


class _Utf8Lines:
    """Lines of text in another encoding, re-encoded to UTF-8 bytes (lines end at ``\\n``)."""

    def __init__(self, stream: io.BufferedIOBase, source: InputSource) -> None:
        self._text = io.TextIOWrapper(stream, encoding=source.encoding, newline="\n")
        self._source = source
        self._line = 0

    def readline(self) -> bytes:
        try:
            line = self._text.readline()
        except UnicodeDecodeError as exc:
            raise InputDataError(
                f"input {self._source.name} cannot be decoded as {self._source.encoding} "
                f"at line {self._line + 1} or soon after: {exc.reason}; pass the file's real "
                "encoding with --encoding"
            ) from None
        self._line += 1
        return line.encode(UTF8)

    def close(self) -> None:
        self._text.close()

    def __enter__(self) -> _Utf8Lines:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _canonical(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise InputDataError(f"unknown text encoding {encoding!r}") from None


def as_source(
    data: str | Path | pd.DataFrame | InputSource, encoding: str | None = None
) -> InputSource:
    """Accept the forms the public API takes: a path, a DataFrame or a source.

    ``encoding`` applies to files (a DataFrame is always serialised as UTF-8); ``None``
    keeps a source's own encoding and means UTF-8 for a path.
    """
    if isinstance(data, InputSource):
        if encoding is None or data.path is None:
            return data
        return dataclasses.replace(data, encoding=_canonical(encoding))
    if isinstance(data, pd.DataFrame):
        return InputSource.from_frame(data)
    return InputSource.from_path(data, encoding or UTF8)


def fingerprint(source: InputSource) -> dict:
    """SHA-256 of the input's bytes, its record and column counts, and when it was taken.

    The digest is computed over the bytes exactly as stored, never over a re-serialised
    table, so the same file gives the same digest whatever the configuration.  The same
    pass checks that the bytes decode with the source's encoding, so a file in another
    encoding stops here, before any work, naming the line and byte offset of the first byte
    that does not decode.
    """
    digest = sha256_of(source, check_encoding=True)
    reader = ChunkReader(source)
    try:
        row_count = reader.count_records()
    finally:
        reader.close()
    return {
        "sha256": digest,
        "row_count": row_count,
        "column_count": len(reader.columns),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source.name if source.path is not None else "in-memory DataFrame as CSV",
    }


def sha256_of(source: InputSource, check_encoding: bool = False) -> str:
    """Hex SHA-256 of the source's bytes as stored; optionally check that they decode."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder(source.encoding)("strict") if check_encoding else None
    offset = 0
    with source.open() as stream:
        for block in iter(lambda: stream.read(_HASH_BLOCK), b""):
            digest.update(block)
            if decoder is not None:
                _decode_or_fail(source, decoder, block, offset)
            offset += len(block)
    if decoder is not None:
        _decode_or_fail(source, decoder, b"", offset, final=True)
    return digest.hexdigest()


def _decode_or_fail(source, decoder, block: bytes, offset: int, final: bool = False) -> None:
    """Decode one block; a byte that does not decode stops the run with where it is."""
    buffered = len(decoder.getstate()[0])
    try:
        decoder.decode(block, final)
    except UnicodeDecodeError as exc:
        position = offset - buffered + exc.start
        bad = exc.object[exc.start : exc.start + 1]
        raise InputDataError(
            f"input {source.name} is not valid {source.encoding.upper()} at line "
            f"{_line_at(source, position)}, byte offset {position} (byte 0x{bad.hex()}: "
            f"{exc.reason}); save the file as UTF-8, or pass its encoding with --encoding "
            "(for example --encoding cp1252)"
        ) from None


def _line_at(source: InputSource, position: int) -> int:
    """The 1-based line of the file that holds byte ``position``."""
    newlines, read = 0, 0
    with source.open() as stream:
        while read < position:
            block = stream.read(min(_HASH_BLOCK, position - read))
            if not block:
                break
            newlines += block.count(b"\n")
            read += len(block)
    return newlines + 1


@dataclass
class RawChunk:
    """Unparsed records: their bytes and the file line number each starts on."""

    records: list[bytes]
    line_numbers: list[int]
    # Where the input stands after each record: (byte offset, next line number).  Filled by
    # ChunkReader; a resumed stream starts from the end of its last committed chunk.
    ends: list[tuple[int, int]] = field(default_factory=list)

    @property
    def end(self) -> tuple[int, int] | None:
        """``(byte offset, line number)`` just after the last record, when known."""
        return self.ends[-1] if self.ends else None

    @property
    def input_bytes(self) -> int:
        return sum(len(record) for record in self.records)

    def __len__(self) -> int:
        return len(self.records)

    def split(self, first_rows: int) -> tuple[RawChunk, RawChunk]:
        """The first ``first_rows`` records and the rest, both still unparsed."""
        head = RawChunk(
            self.records[:first_rows], self.line_numbers[:first_rows], self.ends[:first_rows]
        )
        tail = RawChunk(
            self.records[first_rows:], self.line_numbers[first_rows:], self.ends[first_rows:]
        )
        return head, tail


class ChunkReader:
    """Yields the table record by record in groups of any size, with put-back.

    A record is one line, or several when a quoted field holds a line break (detected by an
    odd number of quote characters so far).  ``take(n)`` returns up to ``n`` records;
    ``put_back(chunk)`` returns records to the front so that the next ``take`` sees them
    again, which is how the streaming mode splits a chunk without losing or repeating rows.
    """

    def __init__(self, source: InputSource) -> None:
        self.source = source
        self._stream = source.open_utf8()
        self._returned: deque[tuple[bytes, int, tuple[int, int] | None]] = deque()
        try:
            header = self._stream.readline()
        except BaseException:
            self.close()
            raise
        # A byte-order mark belongs to the file, not to the first column's name.
        self.header = header.removeprefix(codecs.BOM_UTF8)
        # Where the first record starts in the file's bytes (meaningful for UTF-8 input).
        self.data_offset = len(header)
        bom = len(header) - len(self.header)
        self._line = 2  # the header is line 1
        self._offset = len(header)  # bytes of the input read so far (of UTF-8 text)
        if not self.header.strip():
            self.close()
            raise InputDataError(
                f"input {source.name} is empty: expected a CSV header line naming the columns "
                "(full_name, rating, ...) followed by one line per player"
            )
        try:
            self.columns = _parse_header(self.header, source.name, bom)
        except BaseException:
            self.close()
            raise

    def take(self, rows: int) -> RawChunk:
        """Up to ``rows`` records; an empty chunk means the input is exhausted."""
        records, lines, ends = [], [], []
        while self._returned and len(records) < rows:
            record, line, end = self._returned.popleft()
            records.append(record)
            lines.append(line)
            ends.append(end)
        while len(records) < rows:
            record, line = self._next_record()
            if record is None:
                break
            records.append(record)
            lines.append(line)
            ends.append((self._offset, self._line))
        return RawChunk(records, lines, ends)

    def put_back(self, chunk: RawChunk) -> None:
        """Return unprocessed records so that the next ``take`` starts with them."""
        ends = chunk.ends or [None] * len(chunk)
        triples = list(zip(chunk.records, chunk.line_numbers, ends, strict=True))
        self._returned.extendleft(reversed(triples))

    def resume_at(self, offset: int, line: int, records: int) -> None:
        """Continue after ``records`` records that end at byte ``offset``, before ``line``.

        A UTF-8 file is positioned by seeking to ``offset``; text in another encoding is
        re-read record by record (its offsets count re-encoded bytes).  Either way the
        line number reached must be ``line``, or the input is not the one journalled.
        """
        if self._returned:
            raise ValueError("resume_at must be called before any record is taken")
        if self.source.is_utf8:
            self._stream.seek(offset)
            self._offset, self._line = offset, line
            return
        skipped = self.take(records)
        if len(skipped) != records or skipped.end != (offset, line):
            raise InputDataError(
                f"input {self.source.name} does not have the {records} records the journal "
                f"says were processed (up to line {line - 1})"
            )

    def count_records(self) -> int:
        """Consume the rest of the input and count its records."""
        count = len(self._returned)
        self._returned.clear()
        while self._next_record()[0] is not None:
            count += 1
        return count

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> ChunkReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _next_record(self) -> tuple[bytes | None, int]:
        """The next non-blank record and the line it starts on, or (None, line) at the end."""
        while True:
            line = self._stream.readline()
            if not line:
                return None, self._line
            start = self._line
            self._line += 1
            self._offset += len(line)
            while line.count(b'"') % 2 == 1 and _inside_quotes(line):
                more = self._stream.readline()
                if not more:
                    break  # an unclosed quote at the end: the record is quarantined
                self._line += 1
                self._offset += len(more)
                line += more
            if line.strip():
                if not line.endswith(b"\n"):
                    line += b"\n"
                return line, start


def _inside_quotes(record: bytes) -> bool:
    """Whether ``record`` ends inside a quoted field, by the CSV rules.

    Only a quote that starts a field opens a quoted field (``"a, b"``); inside one, ``""`` is
    a quote character; elsewhere a quote is an ordinary character (``Shaquille O"Neal``).
    Called only for records with an odd number of quotes, so a stray quote does not join the
    lines that follow into one record.
    """
    quoted = False
    field_start = True
    index, size = 0, len(record)
    while index < size:
        char = record[index]
        if quoted:
            if char == 0x22:
                if index + 1 < size and record[index + 1] == 0x22:
                    index += 1
                else:
                    quoted = False
        elif char == 0x22 and field_start:
            quoted = True
        field_start = not quoted and char == 0x2C
        index += 1
    return quoted


@dataclass
class ParsedChunk:
    """A chunk parsed into an Arrow table of strings, with each row's line and raw bytes."""

    table: pa.Table
    line_numbers: np.ndarray
    records: list[bytes]

    def __len__(self) -> int:
        return self.table.num_rows


def parse_chunk(header: bytes, chunk: RawChunk, columns: list[str]) -> ParsedChunk:
    """Parse raw records into strings (empty where a field is empty), one column per field.

    Every cell stays text so that cleaning sees exactly what the file holds, in every mode.
    A record that is not exactly one row of ``len(columns)`` fields, or not UTF-8, becomes a
    row holding the fields it has (cut or padded with empty strings) and its reason in the
    extra :data:`RECORD_ERROR` column, which is present only when some record is malformed.
    """
    if not len(chunk):
        empty = pa.table({name: pa.array([], pa.string()) for name in columns})
        return ParsedChunk(empty, np.array([], dtype=np.int64), [])
    if len(chunk) <= _SMALL_CHUNK_ROWS:
        table = _parse_small(chunk, columns)
    else:
        table = _parse_large(header, chunk, columns)
    return ParsedChunk(table, np.asarray(chunk.line_numbers, dtype=np.int64), chunk.records)


def _parse_small(chunk: RawChunk, columns: list[str]) -> pa.Table:
    """The standard library's CSV reader: far less fixed cost per call than Arrow's, which
    matters for the small chunks of an edge device."""
    try:
        text = b"".join(chunk.records).decode(UTF8)
    except UnicodeDecodeError:
        return _parse_each(chunk, columns)
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error:
        return _parse_each(chunk, columns)
    if len(rows) != len(chunk) or any(len(row) != len(columns) for row in rows):
        return _parse_each(chunk, columns)
    values = list(zip(*rows, strict=True))
    return pa.table({name: pa.array(values[i], pa.string()) for i, name in enumerate(columns)})


def _parse_large(header: bytes, chunk: RawChunk, columns: list[str]) -> pa.Table:
    types = {name: pa.string() for name in columns}
    try:
        table = pa_csv.read_csv(
            io.BytesIO(header + b"".join(chunk.records)),
            read_options=pa_csv.ReadOptions(use_threads=len(chunk) > _THREADED_ROWS),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types=types, strings_can_be_null=False, quoted_strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return _parse_each(chunk, columns)
    if table.num_rows != len(chunk):
        return _parse_each(chunk, columns)
    return table.rename_columns(columns)


def _parse_each(chunk: RawChunk, columns: list[str]) -> pa.Table:
    """Record by record, for a chunk holding a malformed record: every record keeps its row,
    and each malformed one says why in :data:`RECORD_ERROR`."""
    width = len(columns)
    cells: list[list[str]] = [[] for _ in columns]
    errors: list[str] = []
    for record in chunk.records:
        fields, error = _parse_record(record, width)
        lines = record.rstrip(b"\r\n").count(b"\n") + 1
        if error and lines > 1:
            error += f"; the record spans {lines} lines: check for an unclosed quote"
        fields = (fields + [""] * width)[:width]
        for column, value in zip(cells, fields, strict=True):
            column.append(value)
        errors.append(error)
    malformed = sum(1 for error in errors if error)
    logger.debug("%d malformed record(s) among lines %s-%s", malformed, *_line_span(chunk))
    arrays = {
        name: pa.array(values, pa.string()) for name, values in zip(columns, cells, strict=True)
    }
    arrays[RECORD_ERROR] = pa.array(errors, pa.string())
    return pa.table(arrays)


def _parse_record(record: bytes, width: int) -> tuple[list[str], str]:
    """One record's fields and "" when it is one row of ``width`` fields, else the reason."""
    try:
        text = record.decode(UTF8)
    except UnicodeDecodeError as exc:
        return [], f"record: not valid UTF-8 at byte {exc.start} of the record"
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        return [], f"record: not a CSV row ({exc})"
    if len(rows) != 1:
        return (rows[0] if rows else []), (
            f"record: holds {len(rows)} CSV rows, expected 1 (check for an unclosed quote)"
        )
    fields = rows[0]
    if len(fields) < width:
        return fields, (
            f"record: has {len(fields)} of {width} fields (truncated line or missing separators)"
        )
    if len(fields) > width:
        return fields, (
            f"record: has {len(fields)} fields, expected {width} (unquoted comma or extra "
            "separator)"
        )
    return fields, ""


def _line_span(chunk: RawChunk) -> tuple[int, int]:
    return chunk.line_numbers[0], chunk.line_numbers[-1]


def read_table(source: InputSource) -> ParsedChunk:
    """The whole input as one parsed chunk.

    Large UTF-8 inputs are read by Arrow's multi-threaded CSV reader straight from the file
    (see :func:`iter_table_blocks`); any input it cannot number exactly goes through the
    record reader, with the same rows, line numbers and raw records either way.
    """
    try:
        blocks = list(iter_table_blocks(source, block_bytes=None))
    except FastReadUnavailable:
        return read_table_exact(source)
    if len(blocks) == 1:
        return blocks[0]
    return _concat_parsed(blocks)


def read_table_exact(source: InputSource) -> ParsedChunk:
    """The whole input as one parsed chunk, through the record reader."""
    with ChunkReader(source) as reader:
        return parse_chunk(reader.header, reader.take(sys.maxsize), reader.columns)


# --------------------------------------------------------------------------- fast batch read
#
# A record is one physical line whenever no line holds an odd number of quote characters
# (the record reader joins lines only then), no line ends in a bare carriage return (Arrow
# ends a line there, the record reader does not) and no line is blank but for whitespace
# (the record reader skips it, Arrow does not; such a line makes Arrow fail, so it never
# goes unnoticed).  One cheap pass over the bytes checks these conditions and finds the
# empty lines; then the n-th row Arrow parses is the n-th non-empty line, and the row count
# Arrow returns is checked against the number of such lines.  When anything does not hold,
# :class:`FastReadUnavailable` sends the caller to the record reader.

_SCAN_BLOCK = 16 << 20
FAST_READ_MIN_ROWS = _SMALL_CHUNK_ROWS + 1
BATCH_BLOCK_BYTES = 16 << 20


class FastReadUnavailable(Exception):
    """The input cannot be read (or numbered) exactly by the fast path."""


@dataclass
class _Layout:
    """Where the records of a UTF-8 input are: the line number of every record."""

    data_offset: int
    line_numbers: np.ndarray
    # Whether any quote character occurs: without one no value can hold a line break, and
    # Arrow may split the text at any newline (its faster, parallel chunking).
    quoted: bool = True


def _scan_layout(source: InputSource, data_offset: int) -> _Layout:
    """Check the conditions of the fast path and number the records, in one pass.

    Blocks are taken as read, with what matters at their edges carried over (the quote
    parity of the line in progress, a carriage return, the last two bytes), so no block is
    copied.
    """
    lines = 0
    blank_suspect = False
    quoted = False
    odd_quotes = False  # the line in progress holds an odd number of quotes so far
    last_two = b"\n"  # the header line ended just before the data
    tail = b""  # the line in progress (after the last newline)
    with source.open() as stream:
        stream.seek(data_offset)
        while True:
            block = stream.read(_SCAN_BLOCK)
            if not block:
                break
            if last_two.endswith(b"\r") and not block.startswith(b"\n"):
                raise FastReadUnavailable("a carriage return that does not end a line")
            edge = last_two + block[:2]
            if b"\n\n" in edge or b"\n\r\n" in edge:
                blank_suspect = True
            if b"\r" in block and block.count(b"\r") != block.count(b"\r\n") + block.endswith(
                b"\r"
            ):
                raise FastReadUnavailable("a carriage return that does not end a line")
            # numpy finds a byte several times faster than bytes.count or a substring search;
            # two newlines at most two bytes apart may enclose an empty line (or "\r").
            positions = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 0x0A)
            newlines = len(positions)
            if newlines > 1 and np.diff(positions).min() <= 2:
                blank_suspect = True
            if b'"' in block:
                quoted = True
                odd_quotes = _odd_quote_lines(block, odd_quotes)
            elif odd_quotes and newlines:
                raise FastReadUnavailable("a line with an odd number of quotes")
            lines += newlines
            if newlines:
                tail = block[block.rfind(b"\n") + 1 :]
            else:
                tail += block
            last_two = block[-2:] if len(block) > 1 else (last_two + block)[-2:]
    if last_two.endswith(b"\r"):
        raise FastReadUnavailable("a carriage return that does not end a line")
    if odd_quotes:
        raise FastReadUnavailable("a line with an odd number of quotes")
    if tail:
        if not tail.strip():
            raise FastReadUnavailable("whitespace at the end of the input")
        lines += 1
    if not blank_suspect:
        return _Layout(data_offset, np.arange(2, lines + 2, dtype=np.int64), quoted)
    return _Layout(data_offset, _nonblank_line_numbers(source, data_offset), quoted)


def _odd_quote_lines(block: bytes, odd_before: bool) -> bool:
    """Raise when a line ending in ``block`` holds an odd number of quotes; whether the line
    still in progress at its end holds an odd number so far."""
    data = np.frombuffer(block, dtype=np.uint8)
    quotes = np.flatnonzero(data == 0x22)
    newlines = np.flatnonzero(data == 0x0A)
    per_line = np.bincount(np.searchsorted(newlines, quotes), minlength=len(newlines) + 1)
    per_line[0] += odd_before
    if (per_line[:-1] & 1).any():
        raise FastReadUnavailable("a line with an odd number of quotes")
    return bool(per_line[-1] & 1)


def _nonblank_line_numbers(source: InputSource, data_offset: int) -> np.ndarray:
    """Line numbers of the lines that are not empty (nor a lone carriage return)."""
    ends = _line_ends(source, data_offset)
    starts = np.r_[data_offset, ends[:-1] + 1]
    length = ends - starts
    blank = length == 0
    maybe_cr = np.flatnonzero(length == 1)
    if len(maybe_cr):
        with source.open() as stream:
            for index in maybe_cr.tolist():
                stream.seek(int(starts[index]))
                blank[index] = stream.read(1) == b"\r"
    return np.flatnonzero(~blank).astype(np.int64) + 2


def _line_ends(source: InputSource, data_offset: int) -> np.ndarray:
    """Byte offset of the end of every line after the header (its newline, or the end)."""
    parts = []
    position = data_offset
    with source.open() as stream:
        stream.seek(data_offset)
        while True:
            block = stream.read(_SCAN_BLOCK)
            if not block:
                break
            parts.append(np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 0x0A) + position)
            position += len(block)
            last = block[-1:]
    ends = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    if position > data_offset and last != b"\n":
        ends = np.r_[ends, position]
    return ends.astype(np.int64)


class _FileRecords:
    """Raw records of the fast path, read back from the input only when asked for (the
    quarantine report needs the raw text of its rows, which are few)."""

    def __init__(self, source: InputSource, data_offset: int) -> None:
        self._source = source
        self._data_offset = data_offset
        self._ends: np.ndarray | None = None

    def records(self, lines) -> list[bytes]:
        """The records that start on the given lines, each ending in a newline."""
        if self._ends is None:
            self._ends = _line_ends(self._source, self._data_offset)
        found = []
        with self._source.open() as stream:
            for line in lines:
                index = int(line) - 2
                start = self._data_offset if index == 0 else int(self._ends[index - 1]) + 1
                stream.seek(start)
                record = stream.read(int(self._ends[index]) - start + 1)
                found.append(record if record.endswith(b"\n") else record + b"\n")
        return found


class LineRecords(Sequence):
    """The raw records (bytes, ending in a newline) of rows read by the fast path."""

    def __init__(self, records: _FileRecords, line_numbers: np.ndarray) -> None:
        self._records = records
        self._line_numbers = line_numbers

    def __len__(self) -> int:
        return len(self._line_numbers)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self._records.records(self._line_numbers[index])
        return self._records.records([self._line_numbers[index]])[0]

    def take(self, rows) -> list[bytes]:
        """The records of several rows, read in one go."""
        return self._records.records(self._line_numbers[np.asarray(rows, dtype=np.int64)])


def iter_table_blocks(
    source: InputSource,
    block_bytes: int | None = BATCH_BLOCK_BYTES,
    dictionary: bool = False,
    only: tuple[str, ...] | None = None,
):
    """The input as parsed chunks of about ``block_bytes`` of text each (one chunk when
    ``None``), read by Arrow's CSV reader; rows, line numbers and records are those of
    :func:`read_table_exact`.  With ``dictionary`` the columns are dictionary-encoded
    strings (each distinct value of a chunk stored once), which cleaning parses once per
    distinct value (a column whose values hardly repeat stays plain).  ``only`` keeps just
    the named columns (every field of every record is still checked).

    Raises :class:`FastReadUnavailable` (possibly after yielding some chunks) when the
    input is not UTF-8, too small to be worth it (the record reader parses small tables
    with the standard library), or not numbered exactly by the fast path; the caller then
    reads it with :func:`read_table_exact`.
    """
    if not source.is_utf8:
        raise FastReadUnavailable("not UTF-8")
    with ChunkReader(source) as reader:
        columns, data_offset = reader.columns, reader.data_offset
    if len(columns) < 2:
        raise FastReadUnavailable("a single column: a blank line would be a row")
    layout = _scan_layout(source, data_offset)
    expected = len(layout.line_numbers)
    if expected < FAST_READ_MIN_ROWS:
        raise FastReadUnavailable("small input")
    names = [f"f{i}" for i in range(len(columns))]
    kept = [i for i, name in enumerate(columns) if only is None or name in only]
    read_options = pa_csv.ReadOptions(
        use_threads=True,
        column_names=names,
        block_size=block_bytes or (1 << 24),
    )
    parse_options = pa_csv.ParseOptions(newlines_in_values=layout.quoted)
    encoded = _repeating_columns(source, data_offset, names) if dictionary else set()
    convert_options = pa_csv.ConvertOptions(
        column_types={
            name: pa.dictionary(pa.int32(), pa.string()) if name in encoded else pa.string()
            for name in names
        },
        include_columns=[names[i] for i in kept],
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    records = _FileRecords(source, data_offset)
    stream = _arrow_stream(source, data_offset)
    try:
        if block_bytes is None:
            try:
                table = pa_csv.read_csv(stream, read_options, parse_options, convert_options)
            except (pa.ArrowException, UnicodeDecodeError) as exc:
                raise FastReadUnavailable(str(exc)) from None
            if table.num_rows != expected:
                raise FastReadUnavailable("row count")
            yield ParsedChunk(
                table.rename_columns([columns[i] for i in kept]),
                layout.line_numbers,
                LineRecords(records, layout.line_numbers),
            )
            return
        try:
            batches = pa_csv.open_csv(stream, read_options, parse_options, convert_options)
        except (pa.ArrowException, UnicodeDecodeError) as exc:
            raise FastReadUnavailable(str(exc)) from None
        done = 0
        while True:
            try:
                batch = batches.read_next_batch()
            except StopIteration:
                break
            except (pa.ArrowException, UnicodeDecodeError) as exc:
                raise FastReadUnavailable(str(exc)) from None
            if not batch.num_rows:
                continue
            if done + batch.num_rows > expected:
                raise FastReadUnavailable("row count")
            lines = layout.line_numbers[done : done + batch.num_rows]
            done += batch.num_rows
            table = pa.Table.from_batches([batch]).rename_columns([columns[i] for i in kept])
            yield ParsedChunk(table, lines, LineRecords(records, lines))
        if done != expected:
            raise FastReadUnavailable("row count")
    finally:
        stream.close()


_SAMPLE_BYTES = 1 << 20


def _repeating_columns(source: InputSource, data_offset: int, names: list[str]) -> set[str]:
    """Columns whose values repeat in the first megabyte of records (worth dictionary
    encoding: each distinct value is then parsed once); all of them if it cannot tell."""
    with source.open() as stream:
        stream.seek(data_offset)
        sample = stream.read(_SAMPLE_BYTES)
    sample = sample[: sample.rfind(b"\n") + 1]
    try:
        table = pa_csv.read_csv(
            io.BytesIO(sample),
            read_options=pa_csv.ReadOptions(column_names=names, use_threads=False),
            convert_options=pa_csv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return set(names)
    if not table.num_rows:
        return set(names)
    return {name for name in names if len(pc.unique(table.column(name))) <= table.num_rows // 2}


def _arrow_stream(source: InputSource, offset: int):
    if source.data is not None:
        return pa.BufferReader(pa.py_buffer(source.data).slice(offset))
    try:
        stream = pa.OSFile(str(source.path), "rb")
    except OSError as exc:
        raise InputDataError(f"input file {source.path} cannot be read: {exc}") from None
    stream.seek(offset)
    return stream


def _concat_parsed(blocks: list[ParsedChunk]) -> ParsedChunk:
    tables = [block.table for block in blocks]
    if any(RECORD_ERROR in table.column_names for table in tables):
        tables = [
            table
            if RECORD_ERROR in table.column_names
            else table.append_column(RECORD_ERROR, pa.array([""] * table.num_rows, pa.string()))
            for table in tables
        ]
    lines = np.concatenate([block.line_numbers for block in blocks])
    files = {id(getattr(block.records, "_records", None)) for block in blocks}
    if len(files) == 1 and isinstance(blocks[0].records, LineRecords):
        records = LineRecords(blocks[0].records._records, lines)
    else:
        records = [record for block in blocks for record in block.records]
    return ParsedChunk(pa.concat_tables(tables), lines, records)


def _parse_header(header: bytes, name: str, offset: int = 0) -> list[str]:
    """Column names of the header line; ``offset`` is where it starts in the file."""
    try:
        text = header.decode(UTF8)
    except UnicodeDecodeError as exc:
        raise InputDataError(
            f"input {name} is not valid UTF-8 at line 1, byte offset {offset + exc.start}; "
            "save the file as UTF-8, or pass its encoding with --encoding (for example "
            "--encoding cp1252)"
        ) from None
    # pandas names a blank column "Unnamed: <i>" and a repeated one "<name>.1", so every
    # column keeps a distinct name and the extra ones are reported, never silently merged.
    try:
        columns = pd.read_csv(io.StringIO(text), nrows=0).columns
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputDataError(
            f"input {name}: header line 1 is not a CSV line of column names ({exc})"
        ) from None
    return [str(column).strip() for column in columns]


def head_source(source: InputSource, rows: int) -> InputSource:
    """The header and the first ``rows`` records of ``source``, byte for byte, in memory."""
    with ChunkReader(source) as reader:
        chunk = reader.take(rows)
        data = reader.header + b"".join(chunk.records)
    return InputSource(name=f"{source.name} (first {len(chunk)} rows)", data=data)


def require_columns(source: InputSource, required: tuple[str, ...]) -> list[str]:
    """The input's columns; fails before any work when a required one is absent."""
    with ChunkReader(source) as reader:
        columns = reader.columns
    absent = [name for name in required if name not in columns]
    if absent:
        separator = next((sep for sep in ";\t|" if len(columns) == 1 and sep in columns[0]), None)
        hint = (
            f"the file seems to separate fields with {separator!r}; save it comma-separated"
            if separator
            else "add the column(s) or check that this is the NBA2K player table"
        )
        raise InputDataError(
            f"input {source.name} lacks required column(s) {', '.join(map(repr, absent))}; "
            f"its header (line 1) has {', '.join(columns)}; {hint}"
        )
    return columns
