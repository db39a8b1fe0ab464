"""Reading the raw CSV: the dataset fingerprint and a chunk reader shared by every mode.

Both modes read through :class:`ChunkReader`: batch takes every record in one chunk,
streaming takes ``chunk_size`` records at a time.  Records are kept as raw bytes until they
are parsed, so each chunk knows exactly how many input bytes it holds, and a chunk that has
to be split can hand records back to the reader unparsed.  Every parsed row keeps its
1-based line number in the file as its index, which is how quarantined rows are reported
and why batch and streaming outputs can be compared row by row.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import sys
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from .errors import InputDataError

logger = logging.getLogger(__name__)

_HASH_BLOCK = 1 << 20
_THREADED_ROWS = 50_000
_SMALL_CHUNK_ROWS = 2_048


@dataclass(frozen=True)
class InputSource:
    """Where the raw table comes from: a file on disk or CSV bytes held in memory."""

    name: str
    path: Path | None = None
    data: bytes | None = None

    @classmethod
    def from_path(cls, path: str | Path) -> InputSource:
        """A CSV file; fails with a clear message when it is missing or not a file."""
        path = Path(path)
        if not path.exists():
            raise InputDataError(f"input file {path} does not exist")
        if not path.is_file():
            raise InputDataError(f"input path {path} is not a file")
        return cls(name=str(path), path=path)

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
            raise InputDataError(f"input file {self.path} cannot be read: {exc}") from None


def as_source(data: str | Path | pd.DataFrame | InputSource) -> InputSource:
    """Accept the forms the public API takes: a path, a DataFrame or a source."""
    if isinstance(data, InputSource):
        return data
    if isinstance(data, pd.DataFrame):
        return InputSource.from_frame(data)
    return InputSource.from_path(data)


def fingerprint(source: InputSource) -> dict:
    """SHA-256 of the input's bytes, its record and column counts, and when it was taken.

    The digest is computed over the bytes exactly as stored, never over a re-serialised
    table, so the same file gives the same digest whatever the configuration.
    """
    digest = hashlib.sha256()
    with source.open() as stream:
        for block in iter(lambda: stream.read(_HASH_BLOCK), b""):
            digest.update(block)
    reader = ChunkReader(source)
    try:
        row_count = reader.count_records()
    finally:
        reader.close()
    return {
        "sha256": digest.hexdigest(),
        "row_count": row_count,
        "column_count": len(reader.columns),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source.name if source.path is not None else "in-memory DataFrame as CSV",
    }


@dataclass
class RawChunk:
    """Unparsed records: their bytes and the file line number each starts on."""

    records: list[bytes]
    line_numbers: list[int]

    @property
    def input_bytes(self) -> int:
        return sum(len(record) for record in self.records)

    def __len__(self) -> int:
        return len(self.records)

    def split(self, first_rows: int) -> tuple[RawChunk, RawChunk]:
        """The first ``first_rows`` records and the rest, both still unparsed."""
        head = RawChunk(self.records[:first_rows], self.line_numbers[:first_rows])
        tail = RawChunk(self.records[first_rows:], self.line_numbers[first_rows:])
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
        self._stream = source.open()
        self._returned: deque[tuple[bytes, int]] = deque()
        self.header = self._stream.readline()
        self._line = 2  # the header is line 1
        if not self.header.strip():
            self.close()
            raise InputDataError(f"input {source.name} is empty: expected a CSV header line")
        self.columns = _parse_header(self.header, source.name)

    def take(self, rows: int) -> RawChunk:
        """Up to ``rows`` records; an empty chunk means the input is exhausted."""
        records, lines = [], []
        while self._returned and len(records) < rows:
            record, line = self._returned.popleft()
            records.append(record)
            lines.append(line)
        while len(records) < rows:
            record, line = self._next_record()
            if record is None:
                break
            records.append(record)
            lines.append(line)
        return RawChunk(records, lines)

    def put_back(self, chunk: RawChunk) -> None:
        """Return unprocessed records so that the next ``take`` starts with them."""
        pairs = list(zip(chunk.records, chunk.line_numbers, strict=True))
        self._returned.extendleft(reversed(pairs))

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
            while line.count(b'"') % 2 == 1:
                more = self._stream.readline()
                if not more:
                    break
                self._line += 1
                line += more
            if line.strip():
                if not line.endswith(b"\n"):
                    line += b"\n"
                return line, start


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
        text = b"".join(chunk.records).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _unparseable(chunk, columns, f"not UTF-8 at byte {exc.start}") from None
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if len(rows) != len(chunk) or any(len(row) != len(columns) for row in rows):
        raise _unparseable(chunk, columns, "wrong number of fields")
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
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise _unparseable(chunk, columns, str(exc)) from None
    return table.rename_columns(columns)


def _unparseable(chunk: RawChunk, columns: list[str], detail: str) -> InputDataError:
    return InputDataError(
        f"input records at lines {chunk.line_numbers[0]}-{chunk.line_numbers[-1]} could not "
        f"be parsed as {len(columns)} comma-separated UTF-8 fields each: {detail}"
    )


def read_table(source: InputSource) -> ParsedChunk:
    """The whole input as one parsed chunk."""
    with ChunkReader(source) as reader:
        return parse_chunk(reader.header, reader.take(sys.maxsize), reader.columns)


def _parse_header(header: bytes, name: str) -> list[str]:
    try:
        text = header.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputDataError(
            f"input {name}: header is not UTF-8 (byte offset {exc.start})"
        ) from None
    columns = pd.read_csv(io.StringIO(text), nrows=0).columns
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
        raise InputDataError(
            f"input {source.name} lacks required column(s) {', '.join(map(repr, absent))}; "
            f"its header has {', '.join(columns)}"
        )
    return columns
