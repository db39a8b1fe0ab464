"""Bad input: every way a raw file can differ from the clean export, and what the run does.

Files are written by the tests into temporary folders.  The first part reads and cleans
them in this process (encodings, line endings, quoting, column layout, value formats); the
second runs the command line on them, all runs started together, and checks the exit code,
the one-line message and the artifacts (``reports/quarantine.csv``, row accounting).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nba_pipeline import errors
from nba_pipeline.batch import run_batch
from nba_pipeline.cleaning import FORMATS, clean
from nba_pipeline.config import PipelineConfig
from nba_pipeline.errors import (
    ConfigError,
    InputDataError,
    QuarantineLimitError,
    RowAccountingError,
)
from nba_pipeline.ingestion import (
    RECORD_ERROR,
    InputSource,
    fingerprint,
    read_table,
    require_columns,
)
from nba_pipeline.quality import (
    build_quality,
    check_input,
    quarantine_table,
    verify_row_accounting,
)
from nba_pipeline.synth import HEADER, sample_dataset_path
from nba_pipeline.validation import REQUIRED_COLUMNS

REPO = Path(__file__).resolve().parents[1]
CONFIG = PipelineConfig(max_compute_units=1.0, max_memory_mb=1_000_000.0, isolate_runs=False)
SAMPLE_LINES = sample_dataset_path().read_text(encoding="utf-8").splitlines()
GOOD = (
    "LeBron James,97,#23,Los Angeles Lakers,F,12/30/84,6-9 / 2.06,250 lbs. / 113.4 kg.,"
    "$37436858,USA,2003,1,1,,NBA2k20"
)


def sample_with(lines: dict[int, str] | None = None, rows: int = 400) -> list[str]:
    """The sample's header and first ``rows`` rows, with the given data rows (0-based)
    replaced."""
    body = list(SAMPLE_LINES[1 : rows + 1])
    for index, text in (lines or {}).items():
        body[index] = text
    return [SAMPLE_LINES[0], *body]


def write_lines(path: Path, lines: list[str], newline: str = "\n", encoding: str = "utf-8"):
    path.write_bytes((newline.join(lines) + newline).encode(encoding))
    return path


def cleaned(path: Path, encoding: str = "utf-8"):
    parsed = read_table(InputSource.from_path(path, encoding))
    return parsed, clean(parsed.table, parsed.line_numbers, parsed.records)


def with_value(column: str, value: str, line: str = GOOD) -> str:
    fields = next(csv.reader([line]))
    fields[HEADER.index(column)] = value
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(fields)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------
# Encodings, byte-order mark, line endings
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bom", "newline"), [(False, "\n"), (True, "\n"), (False, "\r\n"), (True, "\r\n")]
)
def test_bom_and_crlf_read_like_plain_utf8(tmp_path, bom, newline):
    lines = sample_with(rows=50)
    plain = write_lines(tmp_path / "plain.csv", lines)
    variant = tmp_path / "variant.csv"
    data = (newline.join(lines) + newline).encode("utf-8")
    variant.write_bytes((codecs.BOM_UTF8 if bom else b"") + data)

    expected_parsed, expected = cleaned(plain)
    parsed, result = cleaned(variant)
    assert parsed.table.column_names == list(HEADER)  # no BOM in the first column's name
    assert result.line_numbers.tolist() == expected.line_numbers.tolist()
    assert result.quarantine.empty
    for name, values in expected.columns.items():
        got = result.columns[name]
        if isinstance(values, np.ndarray):
            np.testing.assert_array_equal(got, values)
        else:
            assert got.equals(values), name
    assert fingerprint(InputSource.from_path(variant))["row_count"] == 50


def test_crlf_quarantined_raw_record_has_no_carriage_return(tmp_path):
    path = write_lines(
        tmp_path / "crlf.csv", [",".join(HEADER), GOOD, with_value("height", "tall")], "\r\n"
    )
    _, result = cleaned(path)
    assert result.quarantine["line"].tolist() == [3]
    assert result.quarantine["raw"].iloc[0] == with_value("height", "tall")


def test_non_utf8_byte_is_reported_with_its_line_and_byte_offset(tmp_path):
    lines = sample_with(rows=10)
    lines[3] = lines[3].replace(lines[3].split(",")[0], "Jos\xe9 Calder\xf3n")
    path = write_lines(tmp_path / "latin1.csv", lines, encoding="latin-1")
    offset = len("\n".join(lines[:3]).encode("latin-1")) + 1 + len("Jos")
    with pytest.raises(InputDataError) as caught:
        fingerprint(InputSource.from_path(path))
    message = str(caught.value)
    assert str(path) in message
    assert f"line 4, byte offset {offset} (byte 0xe9" in message
    assert "--encoding" in message


def test_non_utf8_byte_in_the_header_names_line_1(tmp_path):
    path = tmp_path / "header.csv"
    path.write_bytes(b"full_name\xff," + ",".join(HEADER[1:]).encode() + b"\n" + GOOD.encode())
    with pytest.raises(InputDataError, match=r"line 1, byte offset 9"):
        require_columns(InputSource.from_path(path), REQUIRED_COLUMNS)


def test_invalid_byte_across_a_read_block_boundary_is_located_exactly(tmp_path):
    # A two-byte UTF-8 character split by the 1 MiB read blocks is valid; a lone
    # continuation byte far into the file is found at its exact offset.
    filler = "Zoë Ünal," + ",".join(GOOD.split(",")[1:])
    lines = [",".join(HEADER)] + [filler] * 12_000
    path = write_lines(tmp_path / "big.csv", lines)
    data = bytearray(path.read_bytes())
    fingerprint(InputSource.from_path(path))  # all valid
    position = len(data) - 50
    data[position] = 0x80
    path.write_bytes(bytes(data))
    line = data[:position].count(b"\n") + 1
    with pytest.raises(InputDataError, match=rf"line {line}, byte offset {position} \(byte 0x80"):
        fingerprint(InputSource.from_path(path))


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1", "utf-16"])
def test_encoding_option_decodes_the_file_to_the_same_rows(tmp_path, encoding):
    lines = [",".join(HEADER), with_value("full_name", "José Calderón"), GOOD]
    path = write_lines(tmp_path / f"{encoding}.csv", lines, encoding=encoding)
    source = InputSource.from_path(path, encoding)
    # The fingerprint hashes the bytes as stored and counts the decoded records.
    info = fingerprint(source)
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["row_count"] == 2
    parsed, result = cleaned(path, encoding)
    assert result.columns["full_name"].to_pylist() == ["José Calderón", "LeBron James"]
    assert result.quarantine.empty
    # The same file read as UTF-8 is refused before any work.
    with pytest.raises(InputDataError, match="not valid UTF-8"):
        fingerprint(InputSource.from_path(path))


# --------------------------------------------------------------------------------------
# Records: quoting, stray quotes, truncated and overlong lines
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [3, 3000], ids=["standard-library-parser", "arrow-parser"])
def test_quoted_fields_with_commas_and_quotes(tmp_path, rows):
    tricky = with_value("college", 'St. John\'s, "the Red Storm", NY')
    tricky = with_value("full_name", 'Gary "The Glove" Payton, Jr.', tricky)
    lines = [",".join(HEADER)] + [tricky] * rows
    parsed, result = cleaned(write_lines(tmp_path / "quoted.csv", lines))
    assert RECORD_ERROR not in parsed.table.column_names
    assert parsed.table.column("college")[rows - 1].as_py() == 'St. John\'s, "the Red Storm", NY'
    assert set(result.columns["full_name"].to_pylist()) == {'Gary "The Glove" Payton, Jr.'}
    assert len(result) == rows


@pytest.mark.parametrize("rows", [3, 3000], ids=["standard-library-parser", "arrow-parser"])
def test_stray_quote_inside_an_unquoted_field_stays_in_its_line(tmp_path, rows):
    stray = GOOD.replace("LeBron James", 'Shaquille O"Neal')
    lines = [",".join(HEADER), stray] + [GOOD] * (rows - 1)
    parsed, result = cleaned(write_lines(tmp_path / "stray.csv", lines))
    assert len(parsed) == rows
    assert result.columns["full_name"][0].as_py() == 'Shaquille O"Neal'
    assert result.quarantine.empty


@pytest.mark.parametrize("rows", [4, 3000], ids=["standard-library-parser", "arrow-parser"])
def test_truncated_last_line_is_quarantined_not_fatal(tmp_path, rows):
    lines = [",".join(HEADER)] + [GOOD] * rows
    path = tmp_path / "truncated.csv"
    path.write_bytes(("\n".join(lines) + "\n" + GOOD[:23]).encode())  # no final newline
    parsed, result = cleaned(path)
    assert len(parsed) == rows + 1
    assert len(result) == rows
    quarantine = result.quarantine
    assert quarantine["line"].tolist() == [rows + 2]
    assert quarantine["reason"].iloc[0] == (
        "record: has 4 of 15 fields (truncated line or missing separators)"
    )
    assert quarantine["raw"].iloc[0] == GOOD[:23]


def test_record_with_extra_fields_or_unclosed_quote_is_quarantined(tmp_path):
    lines = [",".join(HEADER), GOOD, GOOD + ",surplus", GOOD, 'Cut "Short,97']
    parsed, result = cleaned(write_lines(tmp_path / "fields.csv", lines))
    assert result.line_numbers.tolist() == [2, 4]
    reasons = dict(zip(result.quarantine["line"], result.quarantine["reason"], strict=True))
    assert reasons[3] == ("record: has 16 fields, expected 15 (unquoted comma or extra separator)")
    assert reasons[5].startswith("record: has 2 of 15 fields")


def test_unclosed_quote_mid_file_is_one_quarantined_record_naming_its_span(tmp_path):
    lines = [",".join(HEADER), GOOD, GOOD.replace("LeBron", '"LeBron'), GOOD, GOOD]
    parsed, result = cleaned(write_lines(tmp_path / "open.csv", lines))
    assert parsed.line_numbers.tolist() == [2, 3]
    assert fingerprint(InputSource.from_path(tmp_path / "open.csv"))["row_count"] == 2
    reason = result.quarantine["reason"].iloc[0]
    assert result.quarantine["line"].tolist() == [3]
    assert "the record spans 3 lines: check for an unclosed quote" in reason


@pytest.mark.parametrize("rows", [2, 3000], ids=["standard-library-parser", "arrow-parser"])
def test_very_long_field_reads_alike_in_both_parsers(tmp_path, rows):
    long_college = "x" * 300_000
    long_row = with_value("college", long_college)
    lines = [",".join(HEADER), long_row] + [GOOD] * (rows - 2) + [long_row]
    parsed, result = cleaned(write_lines(tmp_path / "long.csv", lines))
    assert RECORD_ERROR not in parsed.table.column_names
    assert parsed.table.column("college")[rows - 1].as_py() == long_college
    assert len(result) == rows


def test_blank_lines_are_not_rows(tmp_path):
    lines = [",".join(HEADER), GOOD, "", "   ", GOOD, ""]
    parsed, result = cleaned(write_lines(tmp_path / "blank.csv", lines))
    assert parsed.line_numbers.tolist() == [2, 5]
    assert fingerprint(InputSource.from_path(tmp_path / "blank.csv"))["row_count"] == 2


# --------------------------------------------------------------------------------------
# Columns: any order, extra, optional, required
# --------------------------------------------------------------------------------------


def reorder(lines: list[str], columns: list[str]) -> list[str]:
    frame = pd.read_csv(io.StringIO("\n".join(lines)), dtype=str, keep_default_na=False)
    return frame[columns].to_csv(index=False, lineterminator="\n").splitlines()


def batch_frame(path: Path) -> pd.DataFrame:
    return run_batch(InputSource.from_path(path), CONFIG).transformed.frame()


def test_columns_in_any_order_give_the_same_features(tmp_path):
    lines = sample_with(rows=120)
    shuffled = list(np.random.default_rng(5).permutation(list(HEADER)))
    plain = write_lines(tmp_path / "plain.csv", lines)
    moved = write_lines(tmp_path / "moved.csv", reorder(lines, shuffled))
    pd.testing.assert_frame_equal(batch_frame(moved), batch_frame(plain), check_exact=True)


def test_extra_columns_stay_out_of_the_features_and_are_reported(tmp_path):
    lines = sample_with(rows=120)
    plain = write_lines(tmp_path / "plain.csv", lines)
    extra = [f"{lines[0]},notes,salary_eur"] + [f'{line},"free, text",1' for line in lines[1:]]
    path = write_lines(tmp_path / "extra.csv", extra)
    pd.testing.assert_frame_equal(batch_frame(path), batch_frame(plain), check_exact=True)

    source = InputSource.from_path(path)
    assert check_input(source, CONFIG).extra_columns == ["notes", "salary_eur"]
    quality = build_quality(source, run_batch(source, CONFIG))
    assert quality["schema_ok"]
    assert any("'notes', 'salary_eur'" in issue for issue in quality["schema_issues"])


def test_missing_optional_columns_are_tolerated(tmp_path):
    lines = sample_with(rows=120)
    columns = [name for name in HEADER if name not in ("college", "jersey")]
    path = write_lines(tmp_path / "optional.csv", reorder(lines, columns))
    result = run_batch(InputSource.from_path(path), CONFIG)
    assert result.section["rows_processed"] == 120
    assert "jersey" not in result.state.selected_numeric


def test_missing_required_columns_are_named_with_the_file(tmp_path):
    lines = reorder(sample_with(rows=5), [n for n in HEADER if n not in ("salary", "b_day")])
    path = write_lines(tmp_path / "no_salary.csv", lines)
    with pytest.raises(InputDataError) as caught:
        require_columns(InputSource.from_path(path), REQUIRED_COLUMNS)
    assert str(path) in str(caught.value)
    assert "'b_day', 'salary'" in str(caught.value)


def test_semicolon_separated_file_gets_a_hint(tmp_path):
    lines = [line.replace(",", ";") for line in sample_with(rows=3)]
    path = write_lines(tmp_path / "semicolons.csv", lines)
    with pytest.raises(InputDataError, match="seems to separate fields with ';'"):
        require_columns(InputSource.from_path(path), REQUIRED_COLUMNS)


# --------------------------------------------------------------------------------------
# Values: salary, height and weight in one unit, dates
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("$37436858", 37436858.0),
        ("37436858", 37436858.0),
        ("$37,436,858", 37436858.0),
        ("37,436,858", 37436858.0),
        ("$ 37436858", 37436858.0),
        ("$37436858.50", 37436858.5),
        ("1,234.5", 1234.5),
    ],
)
def test_salary_with_or_without_dollar_sign_and_commas(tmp_path, raw, expected):
    path = write_lines(tmp_path / "s.csv", [",".join(HEADER), with_value("salary", raw)])
    _, result = cleaned(path)
    assert result.quarantine.empty
    assert result.columns["salary"][0] == expected


@pytest.mark.parametrize("raw", ["37.4M", "$37 436 858", "1,23,456", "USD 100", "-5"])
def test_other_salary_forms_are_quarantined_with_the_expected_format(tmp_path, raw):
    path = write_lines(tmp_path / "s.csv", [",".join(HEADER), with_value("salary", raw)])
    _, result = cleaned(path)
    assert len(result) == 0
    assert FORMATS["salary"] in result.quarantine["reason"].iloc[0]


@pytest.mark.parametrize(
    ("column", "raw", "expected"),
    [
        ("height", "6-9", 81 * 0.0254),
        ("height", "2.06", 2.06),
        ("weight", "250 lbs.", 250 * 0.45359237),
        ("weight", "113.4 kg.", 113.4),
    ],
)
def test_height_and_weight_in_one_unit_only(tmp_path, column, raw, expected):
    path = write_lines(tmp_path / "u.csv", [",".join(HEADER), with_value(column, raw)])
    _, result = cleaned(path)
    parsed_name = {"height": "height_m", "weight": "weight_kg"}[column]
    assert result.columns[parsed_name][0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("column", "raw"), [("height", "206 cm"), ("height", "2.06 m"), ("weight", "113 kilos")]
)
def test_units_spelled_otherwise_are_quarantined(tmp_path, column, raw):
    path = write_lines(tmp_path / "u.csv", [",".join(HEADER), with_value(column, raw)])
    _, result = cleaned(path)
    assert result.quarantine["reason"].iloc[0].startswith(f"{column}: value {raw!r}")


@pytest.mark.parametrize("raw", ["12/30/84", "12/30/1984", "1984-12-30", "1984-12-30 "])
def test_birthday_us_and_iso_formats_give_the_same_date(tmp_path, raw):
    path = write_lines(tmp_path / "d.csv", [",".join(HEADER), with_value("b_day", raw)])
    _, result = cleaned(path)
    assert result.columns["b_day"][0] == 5477  # 1984-12-30
    assert result.columns["birth_month"][0] == 12


@pytest.mark.parametrize("raw", ["1984-02-30", "1984-13-01", "30.12.1984", "84-12-30"])
def test_impossible_or_other_dates_are_quarantined(tmp_path, raw):
    path = write_lines(tmp_path / "d.csv", [",".join(HEADER), with_value("b_day", raw)])
    _, result = cleaned(path)
    assert result.quarantine["reason"].iloc[0].startswith(f"b_day: value {raw!r}")


# --------------------------------------------------------------------------------------
# The input check before any work, the quarantine limit, row accounting
# --------------------------------------------------------------------------------------


def test_empty_file_and_header_only_file_are_refused_with_a_clear_message(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(InputDataError, match="is empty: expected a CSV header line"):
        require_columns(InputSource.from_path(empty), REQUIRED_COLUMNS)
    header_only = write_lines(tmp_path / "header.csv", [",".join(HEADER)])
    with pytest.raises(InputDataError, match="has a header but no data rows"):
        check_input(InputSource.from_path(header_only), CONFIG)


def test_quarantine_ratio_over_the_limit_names_ratio_limit_and_reasons(tmp_path):
    bad = {index: with_value("salary", "EUR 5", SAMPLE_LINES[index + 1]) for index in range(6)}
    path = write_lines(tmp_path / "bad.csv", sample_with(bad, rows=100))
    with pytest.raises(QuarantineLimitError) as caught:
        check_input(InputSource.from_path(path), CONFIG)
    message = str(caught.value)
    assert caught.value.exit_code == 3
    assert str(path) in message
    assert "6 of 100 rows (6.0%)" in message
    assert "max_quarantine_ratio 0.05 (5.0%)" in message
    assert "line 2: salary: value 'EUR 5'" in message and "line 4:" in message
    assert "line 5:" not in message  # the first three reasons only
    assert "--max-quarantine-ratio" in message
    # At the limit the run goes on.
    checked = check_input(
        InputSource.from_path(path), CONFIG.with_overrides(max_quarantine_ratio=0.06)
    )
    assert (checked.rows, checked.quarantined, checked.processed) == (100, 6, 94)


def test_no_training_or_no_held_out_row_is_refused(tmp_path):
    # With seed 42 and test fraction 0.2, "Player 0" trains.
    lines = [",".join(HEADER), with_value("full_name", "Player 0")]
    path = write_lines(tmp_path / "one.csv", lines)
    with pytest.raises(InputDataError, match=r"1 for training and 0 held out"):
        check_input(InputSource.from_path(path), CONFIG)


def test_row_accounting_mismatch_is_an_error():
    report = {
        "dataset_fingerprint": {"row_count": 10},
        "batch": {"rows": 10, "rows_processed": 8, "rows_quarantined": 2},
        "streaming": {"rows": 10, "rows_processed": 8, "rows_quarantined": 2},
        "quality": {"rows_read": 10, "rows_processed": 8, "rows_quarantined": 2},
    }
    verify_row_accounting(report, None)
    lost = json.loads(json.dumps(report))
    lost["streaming"]["rows_processed"] = 7
    with pytest.raises(RowAccountingError, match=r"streaming: 10 rows read but 7 processed"):
        verify_row_accounting(lost, None)
    short = json.loads(json.dumps(report))
    short["batch"].update(rows=9, rows_processed=7)
    with pytest.raises(RowAccountingError, match=r"batch: 9 rows read but the input has 10"):
        verify_row_accounting(short, None)


def test_quarantine_table_has_its_header_even_when_empty():
    empty = quarantine_table(None)
    assert empty.to_csv(index=False, lineterminator="\n") == "line,reason,raw\n"
    rows = pd.DataFrame({"raw": ["b", "a"], "line": [9, 3], "reason": ["x", "y"]})
    assert quarantine_table(rows).to_dict("list") == {
        "line": [3, 9],
        "reason": ["y", "x"],
        "raw": ["a", "b"],
    }


@pytest.mark.parametrize(
    ("key", "value", "text"),
    [
        ("max_quarantine_ratio", 1.5, "max_quarantine_ratio must be in [0, 1]"),
        ("max_quarantine_ratio", -0.1, "max_quarantine_ratio must be in [0, 1]"),
        ("max_quarantine_ratio", "lots", "max_quarantine_ratio must be a finite number"),
        ("encoding", "klingon", "encoding 'klingon' is not a known text encoding"),
        ("encoding", "rot13", "is not a text encoding"),
        ("encoding", "", "encoding must be the name of a text encoding"),
    ],
)
def test_bad_input_settings_are_config_errors(key, value, text):
    with pytest.raises(ConfigError) as caught:
        PipelineConfig.from_dict({key: value})
    assert text in str(caught.value)


def test_every_exit_code_is_in_the_readme_table():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Exit codes", 1)[1].split("\n\n", 2)[1]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)}
    classes = [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.PipelineError)
    ]
    assert {cls.exit_code for cls in classes} <= documented
    assert {3, 4, 6, 7} <= documented
    assert readme.index("## Bad input") < readme.index("## Artifacts")


# --------------------------------------------------------------------------------------
# The command line on bad input: exit codes, one-line messages, artifacts
# --------------------------------------------------------------------------------------

_SCRIPT = Path(sys.executable).with_name("nba-pipeline")
NBA_PIPELINE = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "nba_pipeline.cli"]
TIMEOUT_S = 600
SMALL_RUN = {
    "benchmark_runs": 1,
    "max_compute_units": 1.0,
    "sweep_chunk_sizes": [64],
    "sweep_memory_limits_mb": [4096],
    "sweep_compute_limits": [1.0],
    "data_size_fractions": [1.0],
}


def _latin1(tmp: Path) -> Path:
    lines = sample_with(rows=60)
    lines[3] = with_value("full_name", "José Calderón", lines[3])
    return write_lines(tmp / "latin1.csv", lines, encoding="latin-1")


def _empty(tmp: Path) -> Path:
    path = tmp / "empty.csv"
    path.write_bytes(b"")
    return path


def _bad_rows(tmp: Path, count: int, name: str = "bad_rows.csv") -> Path:
    bad = {
        index * 7: with_value("height", "very tall", SAMPLE_LINES[index * 7 + 1])
        for index in range(count)
    }
    lines = sample_with(bad)
    path = write_lines(tmp / name, lines)
    with path.open("a", encoding="utf-8") as handle:  # and a truncated last line
        handle.write(SAMPLE_LINES[5][:30])
    return path


def _small_config(tmp: Path) -> Path:
    path = tmp / "small.json"
    path.write_text(json.dumps(SMALL_RUN), encoding="utf-8")
    return path


# name -> (arguments given a scratch folder, expected exit code)
CLI_CASES = {
    "missing column": (
        lambda tmp: [
            "--input",
            str(
                write_lines(
                    tmp / "no_salary.csv",
                    reorder(sample_with(rows=5), [n for n in HEADER if n != "salary"]),
                )
            ),
        ],
        3,
    ),
    "empty": (lambda tmp: ["--input", str(_empty(tmp))], 3),
    "header only": (
        lambda tmp: ["--input", str(write_lines(tmp / "header.csv", [",".join(HEADER)]))],
        3,
    ),
    "latin-1 as utf-8": (lambda tmp: ["--input", str(_latin1(tmp))], 3),
    "latin-1 with --encoding": (
        lambda tmp: ["--input", str(_latin1(tmp)), "--encoding", "latin-1", "--mode", "batch"],
        0,
    ),
    "too many quarantined": (lambda tmp: ["--input", str(_bad_rows(tmp, 40))], 3),
    "too many quarantined, verbose": (
        lambda tmp: ["--input", str(_bad_rows(tmp, 40)), "--verbose"],
        3,
    ),
    "limit raised": (
        lambda tmp: [
            "--input",
            str(_bad_rows(tmp, 40)),
            "--max-quarantine-ratio",
            "0.2",
            "--mode",
            "batch",
        ],
        0,
    ),
    "bad limit": (lambda tmp: ["--max-quarantine-ratio", "2"], 2),
    "bad encoding": (lambda tmp: ["--encoding", "klingon"], 2),
    "few bad rows, streaming": (
        lambda tmp: ["--input", str(_bad_rows(tmp, 5)), "--mode", "streaming"],
        0,
    ),
    "few bad rows, full run": (
        lambda tmp: ["--input", str(_bad_rows(tmp, 5)), "--config", str(_small_config(tmp))],
        0,
    ),
    "clean sample, batch": (lambda tmp: ["--mode", "batch"], 0),
}


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory, forked_cli) -> dict:
    """Every command-line case of this module, started together (forked from one process
    that has imported the package, each running the command's main())."""
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    runs = {}
    for name, (make_args, _) in CLI_CASES.items():
        tmp = tmp_path_factory.mktemp("cli")
        args = ["run", *make_args(tmp), "--output-dir", str(tmp / "out")]
        if "--verbose" not in args:
            args.append("--quiet")
        runs[name] = (args, tmp)
    done = forked_cli(list(runs.values()), env, TIMEOUT_S)
    return {
        name: (result.returncode, result.stdout, result.stderr, tmp / "out")
        for (name, (_, tmp)), result in zip(runs.items(), done, strict=True)
    }


def error_line(result) -> str:
    returncode, _, stderr, _ = result
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("nba-pipeline: error: ")
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_cli_exit_code(cli_runs, name):
    returncode, _, stderr, _ = cli_runs[name]
    assert returncode == CLI_CASES[name][1], stderr[-3000:]


def test_cli_missing_column_stops_before_any_work(cli_runs):
    line = error_line(cli_runs["missing column"])
    assert "no_salary.csv lacks required column(s) 'salary'" in line
    out = cli_runs["missing column"][3]
    assert not (out / "reports" / "pipeline_report.json").exists()


def test_cli_empty_and_header_only_messages(cli_runs):
    assert "empty.csv is empty" in error_line(cli_runs["empty"])
    assert "header.csv has a header but no data rows" in error_line(cli_runs["header only"])


def test_cli_non_utf8_names_line_and_offset_and_the_fix(cli_runs):
    line = error_line(cli_runs["latin-1 as utf-8"])
    assert re.search(r"latin1\.csv is not valid UTF-8 at line 4, byte offset \d+", line)
    assert "--encoding" in line


def test_cli_encoding_flag_decodes_the_file(cli_runs):
    report = json.loads(
        (cli_runs["latin-1 with --encoding"][3] / "reports" / "pipeline_report.json").read_text()
    )
    assert report["batch"]["rows_processed"] == 60
    assert report["reproducibility"]["config"]["encoding"] == "iso8859-1"


def test_cli_quarantine_limit_message(cli_runs):
    line = error_line(cli_runs["too many quarantined"])
    assert "bad_rows.csv: 41 of 401 rows (10.2%) cannot be used" in line
    assert "max_quarantine_ratio 0.05 (5.0%)" in line
    assert "line 2: height: value 'very tall'" in line
    assert not (cli_runs["too many quarantined"][3] / "reports" / "pipeline_report.json").exists()


def test_cli_verbose_adds_the_traceback(cli_runs):
    _, _, stderr, _ = cli_runs["too many quarantined, verbose"]
    assert "Traceback" in stderr
    assert stderr.strip().splitlines()[-1].startswith("nba-pipeline: error: input ")


def test_cli_raised_limit_writes_every_quarantined_row(cli_runs):
    out = cli_runs["limit raised"][3]
    quarantine = pd.read_csv(out / "reports" / "quarantine.csv", keep_default_na=False)
    assert list(quarantine.columns) == ["line", "reason", "raw"]
    assert quarantine["line"].tolist() == [2 + 7 * index for index in range(40)] + [402]
    assert quarantine["reason"].iloc[0].startswith("height: value 'very tall'")
    assert quarantine["reason"].iloc[-1].startswith("record: has ")
    assert quarantine["raw"].iloc[-1] == SAMPLE_LINES[5][:30]
    report = json.loads((out / "reports" / "pipeline_report.json").read_text())
    assert report["batch"]["rows"] == 401
    assert report["batch"]["rows_quarantined"] == 41
    assert report["batch"]["rows_processed"] == 360


def test_cli_streaming_mode_accounts_rows_and_writes_its_quarantine(cli_runs):
    out = cli_runs["few bad rows, streaming"][3]
    report = json.loads((out / "reports" / "pipeline_report.json").read_text())
    streaming = report["streaming"]
    assert (streaming["rows"], streaming["rows_processed"], streaming["rows_quarantined"]) == (
        401,
        395,
        6,
    )
    quarantine = pd.read_csv(out / "reports" / "quarantine.csv")
    assert quarantine["line"].tolist() == [2, 9, 16, 23, 30, 402]


def test_cli_full_run_accounts_every_row_in_every_section(cli_runs):
    returncode, _, stderr, out = cli_runs["few bad rows, full run"]
    assert returncode == 0, stderr[-3000:]
    assert "6 of 401 rows quarantined" in stderr  # the one warning, even with --quiet
    report = json.loads((out / "reports" / "pipeline_report.json").read_text())
    for mode in ("batch", "streaming"):
        section = report[mode]
        assert (section["rows"], section["rows_processed"], section["rows_quarantined"]) == (
            401,
            395,
            6,
        )
    quality = report["quality"]
    assert (quality["rows_read"], quality["rows_processed"], quality["rows_quarantined"]) == (
        401,
        395,
        6,
    )
    assert quality["rows_accounted"] is True
    assert not quality["schema_ok"]
    assert any("line(s) 402" in issue for issue in quality["schema_issues"])
    assert len(pd.read_csv(out / "reports" / "quarantine.csv")) == 6
    verified = subprocess.run(
        [*NBA_PIPELINE, "verify", str(out)], capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_cli_clean_input_writes_an_empty_quarantine_with_its_header(cli_runs):
    out = cli_runs["clean sample, batch"][3]
    assert (out / "reports" / "quarantine.csv").read_text() == "line,reason,raw\n"
