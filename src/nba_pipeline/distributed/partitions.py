"""The partitioned input of the Dask batch engine: which files, in which order, read how.

``--input`` names a glob (``'data/*.csv'``), a directory or one file; the files it matches are
the partitions, in sorted order of their paths, and that order is the row order: the result
is the batch result of the files concatenated in that order.  Every partition is one file.

A CSV partition is read by the same :class:`~nba_pipeline.ingestion.ChunkReader` and
:func:`~nba_pipeline.ingestion.parse_chunk` as the other modes, so every cell stays text,
malformed records are quarantined with their reason, and each row keeps its line number in
its own file.  A Parquet partition has each column cast to string at read time (nulls become
empty fields, as in a CSV); its "line" is the row's 1-based position plus one, which is the
line the row had in a CSV file with a header and one line per record.

Nothing here imports Dask: the functions run inside Dask tasks and are plain Python.
"""

from __future__ import annotations

import csv
import glob
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputDataError
from ..ingestion import (
    RECORD_ERROR,
    ChunkReader,
    InputSource,
    ParsedChunk,
    parse_chunk,
    sha256_of,
)

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
# Extra columns of a partition's DataFrame: where each row came from, and its raw record.
LINE = "\x00line"
RAW = "\x00raw"


@dataclass(frozen=True)
class Partition:
    """One input file of a distributed batch run and its place in the row order."""

    index: int
    path: str
    kind: str  # "csv" or "parquet"
    encoding: str = "utf-8"

    @property
    def name(self) -> str:
        return self.path


def resolve_inputs(pattern: str | Path, encoding: str = "utf-8") -> list[Partition]:
    """The files ``pattern`` names, sorted by path: a glob, a directory or one file.

    A directory stands for every CSV and Parquet file directly inside it.  Raises
    :class:`InputDataError` naming the pattern when nothing matches, and when the matched
    files mix CSV and Parquet.
    """
    text = os.fspath(pattern)
    path = Path(text)
    if path.is_dir():
        matches = [str(entry) for entry in sorted(path.iterdir()) if _kind(entry) is not None]
    elif glob.has_magic(text):
        matches = [match for match in sorted(glob.glob(text)) if Path(match).is_file()]
    elif path.is_file():
        matches = [text]
    else:
        matches = []
    if not matches:
        raise InputDataError(
            f"--input {text!r} matches no input file; give a CSV or Parquet file, a "
            "directory holding them, or a quoted glob such as 'data/*.csv'"
        )
    kinds = {_kind(Path(match)) or "csv" for match in matches}
    if len(kinds) > 1:
        raise InputDataError(
            f"--input {text!r} matches both CSV and Parquet files; give one kind at a time"
        )
    kind = kinds.pop()
    return [Partition(i, match, kind, encoding) for i, match in enumerate(matches)]


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    return None


def partition_columns(partition: Partition) -> list[str]:
    """The raw column names of a partition (its CSV header or Parquet schema)."""
    if partition.kind == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(partition.path).names)
    with ChunkReader(_source(partition)) as reader:
        return list(reader.columns)


def read_partition(partition: Partition, header: list[str]) -> pd.DataFrame:
    """One partition as a DataFrame of strings (Arrow-backed), with line and raw record.

    ``header`` is the layout every partition must share; a file with another header stops
    the run with both headers named.
    """
    if partition.kind == "parquet":
        table, lines, records = _read_parquet(partition)
    else:
        with ChunkReader(_source(partition)) as reader:
            parsed = parse_chunk(reader.header, reader.take(2**62), reader.columns)
        table, lines, records = parsed.table, parsed.line_numbers, parsed.records
    found = [name for name in table.column_names if name != RECORD_ERROR]
    if found != list(header):
        raise InputDataError(
            f"input {partition.path} has the columns {', '.join(found)}, but the first "
            f"input file has {', '.join(header)}; every partition needs the same header"
        )
    if RECORD_ERROR not in table.column_names:
        table = table.append_column(RECORD_ERROR, pa.array([""] * table.num_rows, pa.string()))
    table = table.append_column(LINE, pa.array(np.asarray(lines, dtype=np.int64)))
    table = table.append_column(RAW, pa.array(list(records), pa.binary()))
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def empty_partition(columns: list[str]) -> pd.DataFrame:
    """The layout of :func:`read_partition`'s frames, with no rows (Dask's ``meta``)."""
    arrays = {name: pa.array([], pa.string()) for name in [*columns, RECORD_ERROR]}
    arrays[LINE] = pa.array([], pa.int64())
    arrays[RAW] = pa.array([], pa.binary())
    return pa.table(arrays).to_pandas(types_mapper=pd.ArrowDtype)


def to_parsed(frame: pd.DataFrame) -> ParsedChunk:
    """A partition's DataFrame back as the :class:`ParsedChunk` the operators take."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    lines = table.column(LINE).to_numpy()
    records = table.column(RAW).to_pylist()
    errors = table.column(RECORD_ERROR)
    table = table.drop_columns([LINE, RAW])
    if not pc.any(pc.not_equal(errors, "")).as_py():
        table = table.drop_columns([RECORD_ERROR])
    return ParsedChunk(table.combine_chunks(), np.asarray(lines, dtype=np.int64), records)


def fingerprint_file(partition: Partition) -> str:
    """SHA-256 of the file's bytes; a CSV's bytes must also decode with its encoding."""
    return sha256_of(_source(partition), check_encoding=partition.kind == "csv")


def _source(partition: Partition) -> InputSource:
    return InputSource.from_path(partition.path, partition.encoding)


def _read_parquet(partition: Partition) -> tuple[pa.Table, np.ndarray, list[bytes]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(partition.path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputDataError(
            f"input {partition.path} is not a readable Parquet file: {exc}"
        ) from None
    # Every column is text at read time, as the CSV readers keep it; a null is an empty field.
    columns = {
        name: pc.fill_null(pc.cast(table.column(name), pa.string()), "")
        for name in table.column_names
    }
    table = pa.table(columns)
    lines = np.arange(2, table.num_rows + 2, dtype=np.int64)
    return table, lines, _csv_records(table)


def _csv_records(table: pa.Table) -> list[bytes]:
    """Each row written as one CSV record (what quarantine.csv shows as its raw text)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    records = []
    for row in zip(*(table.column(name).to_pylist() for name in table.column_names), strict=True):
        writer.writerow(row)
        records.append(buffer.getvalue().encode("utf-8"))
        buffer.seek(0)
        buffer.truncate()
    return records
