"""The fast batch read (Arrow straight from the file) against the record reader.

Batch mode reads a large UTF-8 file with Arrow's CSV reader and numbers its rows by
position, and cleans it block by block with dictionary-encoded columns.  Whatever the
input holds (blank lines, CRLF, a BOM, quoted fields, a quoted line break, stray quotes,
ragged or truncated records, bytes that are not UTF-8), the parsed table, the line numbers,
the raw records, the cleaned columns and the quarantine must be exactly those of the record
reader; inputs the fast path cannot number exactly must fall back to it.
"""

from __future__ import annotations

import codecs

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from nba_pipeline import batch as batch_module
from nba_pipeline import ingestion, quality
from nba_pipeline.batch import read_and_clean
from nba_pipeline.cleaning import clean
from nba_pipeline.config import PipelineConfig
from nba_pipeline.errors import InputDataError, QuarantineLimitError
from nba_pipeline.ingestion import InputSource, read_table, read_table_exact
from nba_pipeline.synth import sample_dataset_path

LINES = sample_dataset_path().read_bytes().splitlines(keepends=True)
HEADER, ROWS = LINES[0], LINES[1:]
BAD_HEIGHT = ROWS[0].replace(b"6-9 / 2.06", b"6 ft 9")
CHECK_CONFIG = PipelineConfig(max_quarantine_ratio=1.0)
MANY = 3_000  # above the size the record reader parses with the standard library


def body(rows: int = MANY) -> list[bytes]:
    return [ROWS[i % len(ROWS)] for i in range(rows)]


def after_name(row: bytes) -> bytes:
    return row[row.index(b",") :]


def variants() -> dict[str, bytes]:
    rows = body()
    out = {"clean": HEADER + b"".join(rows)}

    def edit(name, change):
        copy = list(rows)
        change(copy)
        out[name] = HEADER + b"".join(copy)

    edit(
        "blank lines", lambda r: (r.insert(10, b"\n"), r.insert(500, b"\r\n"), r.insert(0, b"\n"))
    )
    edit("bad values", lambda r: (r.__setitem__(5, BAD_HEIGHT), r.__setitem__(2_999, BAD_HEIGHT)))
    edit("ragged row", lambda r: r.__setitem__(1_234, b"only,three,fields\n"))
    edit("extra fields", lambda r: r.__setitem__(7, r[7].rstrip(b"\n") + b",extra\n"))
    edit("whitespace line", lambda r: r.insert(40, b"   \n"))
    edit("stray quote", lambda r: r.__setitem__(3, b'Law"rence' + after_name(r[3])))
    edit("stray quotes", lambda r: r.__setitem__(3, b'Law"re"nce' + after_name(r[3])))
    edit("quoted comma", lambda r: r.__setitem__(8, b'"Taylor, Lawrence"' + after_name(r[8])))
    edit("quoted newline", lambda r: r.__setitem__(9, b'"Lawrence\nTaylor"' + after_name(r[9])))
    edit("bad utf8", lambda r: r.__setitem__(11, b"Law\xe9rence" + after_name(r[11])))
    edit("no final newline", lambda r: r.__setitem__(-1, r[-1].rstrip(b"\n")))
    edit("truncated last", lambda r: r.__setitem__(-1, b"Someone,90,#1,Miami"))
    edit("bare cr", lambda r: r.__setitem__(20, r[20].replace(b",USA,", b",U\rSA,")))
    out["crlf"] = out["clean"].replace(b"\n", b"\r\n")
    out["bom"] = codecs.BOM_UTF8 + out["clean"]
    out["bom crlf blank"] = codecs.BOM_UTF8 + out["blank lines"].replace(b"\n", b"\r\n")
    out["only header"] = HEADER
    out["small"] = HEADER + b"".join(body(50))
    return out


VARIANTS = variants()


@pytest.fixture(params=sorted(VARIANTS), ids=sorted(VARIANTS))
def path(request, tmp_path):
    file = tmp_path / "table.csv"
    file.write_bytes(VARIANTS[request.param])
    return file


def _same_parsed(fast, exact) -> None:
    assert fast.table.equals(exact.table)
    assert np.array_equal(fast.line_numbers, exact.line_numbers)
    assert len(fast.records) == len(exact.records)
    for row in {0, len(exact) // 2, len(exact) - 1} if len(exact) else ():
        assert fast.records[row] == exact.records[row]


def test_read_table_equals_the_record_reader(path):
    source = InputSource.from_path(path)
    try:
        exact = read_table_exact(source)
    except Exception as error:  # the same error either way
        with pytest.raises(type(error)):
            read_table(source)
        return
    _same_parsed(read_table(source), exact)


@pytest.mark.parametrize("block_bytes", [64 << 10, 1 << 20])
def test_batch_read_and_clean_equals_cleaning_the_whole_table(path, block_bytes, monkeypatch):
    source = InputSource.from_path(path)
    try:
        exact = read_table_exact(source)
    except Exception as error:
        with pytest.raises(type(error)):
            read_and_clean(source)
        return
    expected = clean(exact.table, exact.line_numbers, exact.records)
    monkeypatch.setattr(ingestion, "BATCH_BLOCK_BYTES", block_bytes)
    original = ingestion.iter_table_blocks

    def blocks(source, block_bytes=block_bytes, **options):
        return original(source, block_bytes, **options)

    monkeypatch.setattr(batch_module, "iter_table_blocks", blocks)
    cleaned, rows, _ = read_and_clean(source)
    assert rows == len(exact)
    assert np.array_equal(cleaned.line_numbers, expected.line_numbers)
    assert cleaned.columns.keys() == expected.columns.keys()
    for name, values in expected.columns.items():
        got = cleaned.columns[name]
        if isinstance(values, pa.Array):
            assert got.equals(values), name
        else:
            np.testing.assert_array_equal(got, values, err_msg=name)
    pd.testing.assert_frame_equal(
        cleaned.quarantine.reset_index(drop=True), expected.quarantine.reset_index(drop=True)
    )


def test_fast_path_is_taken_for_a_clean_large_file(tmp_path):
    file = tmp_path / "table.csv"
    file.write_bytes(VARIANTS["blank lines"])
    blocks = list(ingestion.iter_table_blocks(InputSource.from_path(file), 64 << 10))
    assert len(blocks) > 1
    assert sum(len(block) for block in blocks) == MANY


@pytest.mark.parametrize("name", ["quoted newline", "whitespace line", "bare cr", "ragged row"])
def test_inputs_the_fast_path_cannot_number_fall_back(tmp_path, name):
    file = tmp_path / "table.csv"
    file.write_bytes(VARIANTS[name])
    with pytest.raises(ingestion.FastReadUnavailable):
        list(ingestion.iter_table_blocks(InputSource.from_path(file)))


def test_the_input_check_counts_alike_with_either_reader(path, monkeypatch):
    def check():
        try:
            found = quality.check_input(InputSource.from_path(path), CHECK_CONFIG)
        except (InputDataError, QuarantineLimitError) as refused:
            return str(refused)
        return (found.rows, found.quarantined, found.train, found.first_reasons)

    fast = check()

    def unavailable(*_args, **_kwargs):
        raise ingestion.FastReadUnavailable("forced for the comparison")

    monkeypatch.setattr(quality, "iter_table_blocks", unavailable)
    assert fast == check()
