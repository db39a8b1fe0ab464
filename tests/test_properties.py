"""Property-based tests: generated raw tables, well-formed and malformed rows mixed.

Every example writes a CSV into a temporary directory (random line endings, byte-order
mark, column order, quoting style, an extra column, a truncated last line) and runs batch
and streaming in this process, streaming with a random chunk and update size.  For every
example:

- nothing raises;
- rows are accounted for exactly: rows read = rows processed + rows quarantined, in both
  modes, and equal to the records written;
- every well-formed row is processed, to the same feature values in batch and streaming and
  to the salary it was written with;
- every malformed row is quarantined, at its own line, with a reason.

The default "ci" profile (tests/conftest.py) tries a fixed set of examples;
``HYPOTHESIS_PROFILE=dev`` searches longer.
"""

from __future__ import annotations

import csv
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hypothesis import event, given
from hypothesis import strategies as st

from nba_pipeline.batch import run_batch
from nba_pipeline.config import PipelineConfig
from nba_pipeline.ingestion import InputSource
from nba_pipeline.streaming import run_streaming
from nba_pipeline.synth import HEADER

CONFIG = PipelineConfig(max_compute_units=1.0, max_memory_mb=1_000_000.0, isolate_runs=False)
ATOL = 1e-9

TEAMS = ("Los Angeles Lakers", "Boston Celtics", "Utah Jazz", "Miami Heat", "")
POSITIONS = ("F", "G", "C", "F-G", "C-F", "")
COUNTRIES = ("USA", "Canada", "France", "Côte d'Ivoire", "")
COLLEGES = ("", "Duke", "Texas A&M", "St. John's, NY", 'The "U"', "Université, Paris")
FIRST = ("LeBron", "Kawhi", "Shaquille", "D'Angelo", "Nikola", "José", "Ömer", "Jae'Sean")
LAST = ("James", "Leonard", 'O"Neal', "Russell, Jr.", "Jokić", "Calderón", "Yurtseven", "Tate")


@dataclass
class Row:
    """One generated record: its fields by column and whether (and how) it is malformed."""

    fields: dict[str, str]
    salary: float  # the dollars the row must be processed to when it is well-formed
    malformed: str | None = None  # the bad column, "cut" or "extra"; None if well-formed


# Ten fixed players in every generated table, with irregular values: their names fall on
# both sides of the split (seed 42, fraction 0.2), so every table has training and held-out
# rows, and no feature is constant or exactly at the correlation threshold on the training
# rows however the other rows are drawn (those two cases are known to depend on chunking by
# floating-point rounding; see the last test).
_ANCHOR_RNG = np.random.default_rng(20240607)


def _anchor(index: int) -> Row:
    draw = _ANCHOR_RNG.integers
    inches, pounds = int(draw(70, 87)), int(draw(170, 290))
    round_ = int(draw(1, 3))
    salary = int(draw(60_000, 40_000_000))
    fields = {
        "full_name": f"Anchor Player {index}",
        "rating": str(int(draw(62, 98))),
        "jersey": f"#{int(draw(0, 99))}",
        "team": TEAMS[int(draw(0, 4))],
        "position": POSITIONS[int(draw(0, 5))],
        "b_day": f"{int(draw(1, 13)):02d}/{int(draw(1, 29)):02d}/{int(draw(76, 100))}",
        "height": f"{inches // 12}-{inches % 12} / {round(inches * 0.0254, 2)}",
        "weight": f"{pounds} lbs. / {round(pounds * 0.45359237, 1)} kg.",
        "salary": f"${salary}",
        "country": COUNTRIES[int(draw(0, 4))],
        "draft_year": str(int(draw(1996, 2020))),
        "draft_round": str(round_),
        "draft_peak": str(int(draw(1, 31)) + 30 * (round_ - 1)),
        "college": COLLEGES[int(draw(0, 6))],
        "version": ("NBA2k20", "NBA2k21")[int(draw(0, 2))],
    }
    return Row(fields=fields, salary=float(salary))


ANCHORS = tuple(_anchor(index) for index in range(10))


# --------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------


@st.composite
def salaries(draw) -> tuple[str, float]:
    dollars = draw(st.integers(min_value=50_000, max_value=46_000_000))
    cents = draw(st.sampled_from((None, 0, 50, 99)))
    digits = f"{dollars:,}" if draw(st.booleans()) else str(dollars)
    text = ("$" if draw(st.booleans()) else "") + digits
    value = float(dollars)
    if cents is not None:
        text += f".{cents:02d}"
        value = float(f"{dollars}.{cents:02d}")
    return text, value


@st.composite
def birthdays(draw) -> str:
    year = draw(st.integers(min_value=1975, max_value=2001))
    month = draw(st.integers(min_value=1, max_value=12))
    day = draw(st.integers(min_value=1, max_value=28))
    style = draw(st.sampled_from(("mm/dd/yy", "mm/dd/yyyy", "iso", "missing")))
    return {
        "mm/dd/yy": f"{month:02d}/{day:02d}/{year % 100:02d}",
        "mm/dd/yyyy": f"{month}/{day}/{year}",
        "iso": f"{year}-{month:02d}-{day:02d}",
        "missing": "",
    }[style]


@st.composite
def heights(draw) -> str:
    feet = draw(st.integers(min_value=5, max_value=7))
    inches = draw(st.integers(min_value=0, max_value=11))
    metres = round((feet * 12 + inches) * 0.0254, 2)
    return draw(
        st.sampled_from((f"{feet}-{inches} / {metres}", f"{feet}-{inches}", f"{metres}", ""))
    )


@st.composite
def weights(draw) -> str:
    pounds = draw(st.integers(min_value=160, max_value=300))
    kilos = round(pounds * 0.45359237, 1)
    return draw(
        st.sampled_from((f"{pounds} lbs. / {kilos} kg.", f"{pounds} lbs.", f"{kilos} kg.", ""))
    )


@st.composite
def well_formed(draw) -> Row:
    salary_text, salary = draw(salaries())
    round_ = draw(st.sampled_from(("1", "2", "Undrafted")))
    fields = {
        "full_name": f"{draw(st.sampled_from(FIRST))} {draw(st.sampled_from(LAST))}",
        "rating": draw(st.sampled_from(("", *map(str, range(60, 100, 7))))),
        "jersey": draw(st.sampled_from(("", "#0", "#23", "7", "# 11"))),
        "team": draw(st.sampled_from(TEAMS)),
        "position": draw(st.sampled_from(POSITIONS)),
        "b_day": draw(birthdays()),
        "height": draw(heights()),
        "weight": draw(weights()),
        "salary": salary_text,
        "country": draw(st.sampled_from(COUNTRIES)),
        "draft_year": draw(st.sampled_from(("", *map(str, range(1995, 2020, 3))))),
        "draft_round": round_,
        "draft_peak": "Undrafted" if round_ == "Undrafted" else str(draw(st.integers(1, 60))),
        "college": draw(st.sampled_from(COLLEGES)),
        "version": draw(st.sampled_from(("NBA2k20", "NBA2k21"))),
    }
    if draw(st.booleans()):  # spaces around values are trimmed
        column = draw(st.sampled_from(("rating", "team", "salary", "height")))
        fields[column] = f"  {fields[column]} "
    return Row(fields=fields, salary=salary)


BAD_VALUES = {
    "height": ("tall", "6 foot 9", "206 cm"),
    "weight": ("heavy", "250 pounds"),
    "salary": ("$abc", "37.4M", "USD 1000", "", "   "),
    "full_name": ("", "  "),
    "b_day": ("13/45/99", "1984-02-30", "30.12.1984", "yesterday"),
    "rating": ("ninety", "9O"),
    "version": ("2K20", "NBA2k"),
    "draft_year": ("20x3", "03"),
    "jersey": ("#x",),
    "draft_round": ("first",),
}


@st.composite
def bad_value(draw) -> Row:
    row = draw(well_formed())
    column = draw(st.sampled_from(sorted(BAD_VALUES)))
    row.fields[column] = draw(st.sampled_from(BAD_VALUES[column]))
    return Row(fields=row.fields, salary=row.salary, malformed=column)


@st.composite
def wrong_field_count(draw) -> Row:
    """A record with fewer fields (cut at a field boundary) or with an extra field."""
    row = draw(well_formed())
    kind = draw(st.sampled_from(("cut", "extra")))
    return Row(fields=row.fields, salary=row.salary, malformed=kind)


@dataclass
class Table:
    rows: list[Row]
    columns: list[str]
    extra_column: bool
    newline: str
    bom: bool
    quoting: str
    truncated_last: int | None  # characters kept of the last record, written without newline


@st.composite
def tables(draw) -> Table:
    anchors = [Row(fields=dict(row.fields), salary=row.salary) for row in ANCHORS]
    others = draw(
        st.lists(
            st.one_of(well_formed(), well_formed(), bad_value(), wrong_field_count()),
            max_size=30,
        )
    )
    rows = draw(st.permutations(anchors + others))
    columns = list(HEADER)
    if draw(st.booleans()):
        columns = draw(st.permutations(columns))
    absent = draw(st.sets(st.sampled_from(("jersey", "college"))))  # optional columns
    columns = [column for column in columns if column not in absent]
    return Table(
        rows=list(rows),
        columns=list(columns),
        extra_column=draw(st.booleans()),
        newline=draw(st.sampled_from(("\n", "\r\n"))),
        bom=draw(st.booleans()),
        quoting=draw(st.sampled_from(("minimal", "all", "lenient"))),
        truncated_last=draw(st.none() | st.integers(min_value=0, max_value=200)),
    )


# --------------------------------------------------------------------------------------
# Writing a table the way different exporters would
# --------------------------------------------------------------------------------------


def format_field(value: str, quoting: str) -> str:
    needs = any(char in value for char in ",\r\n") or value.startswith('"')
    if quoting == "all" or needs or (quoting == "minimal" and '"' in value):
        return '"' + value.replace('"', '""') + '"'
    return value  # "lenient": a quote inside an unquoted field stays as it is


def format_fields(values: list[str], quoting: str) -> str:
    return ",".join(format_field(value, quoting) for value in values)


def write_table(table: Table, path: Path) -> tuple[list[int], list[int], dict[int, float]]:
    """Write the table; return the lines of well-formed and malformed rows and the salary
    of each well-formed line."""
    columns = table.columns + (["notes"] if table.extra_column else [])
    lines = [format_fields(columns, "minimal")]
    good, bad, salary = [], [], {}
    for index, row in enumerate(table.rows):
        values = [row.fields[column] for column in table.columns]
        values += ["extra, ignored"] if table.extra_column else []
        text = format_fields(values, table.quoting)
        if row.malformed == "cut":
            keep = len(values) // 2
            text = format_fields(values[:keep], table.quoting)
        elif row.malformed == "extra":
            text = format_fields([*values, "surplus"], table.quoting)
        line = index + 2
        lines.append(text)
        # A bad value in an optional column the table does not have is never written.
        if row.malformed is None or row.malformed not in ("cut", "extra", *table.columns):
            good.append(line)
            salary[line] = row.salary
        else:
            bad.append(line)
    body = table.newline.join(lines) + table.newline
    if table.truncated_last is not None:
        # A last record cut short with no newline: at most all but two of its fields.
        values = [row.fields[column] for column in table.columns]
        values += ["extra, ignored"] if table.extra_column else []
        prefix = format_fields(values[: len(values) - 2], table.quoting) + ","
        body += prefix[: table.truncated_last]
        if prefix[: table.truncated_last].strip():
            bad.append(len(lines) + 1)
    data = body.encode("utf-8")
    path.write_bytes((b"\xef\xbb\xbf" if table.bom else b"") + data)
    return good, bad, salary


# --------------------------------------------------------------------------------------
# The property
# --------------------------------------------------------------------------------------


@given(
    table=tables(),
    chunk_size=st.integers(min_value=1, max_value=48),
    batch_size=st.integers(min_value=1, max_value=40),
)
def test_generated_tables_are_processed_or_quarantined_exactly(table, chunk_size, batch_size):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "players.csv"
        good, bad, salary = write_table(table, path)
        event(f"{min(len(bad), 5)}{'+' if len(bad) >= 5 else ''} malformed rows")
        for row in table.rows:
            if row.malformed:
                event(f"malformed: {row.malformed}")
        if table.truncated_last:
            event("truncated last line")
        source = InputSource.from_path(path)
        config = CONFIG.with_overrides(
            chunk_size=chunk_size, batch_size=batch_size, min_chunk_size=1
        )
        batch = run_batch(source, config)
        streaming = run_streaming(source, config, keep_matrix=True)

    rows = len(good) + len(bad)
    for section in (batch.section, streaming.section):
        assert section["rows"] == rows
        assert section["rows_processed"] == len(good)
        assert section["rows_quarantined"] == len(bad)
        assert section["rows"] == section["rows_processed"] + section["rows_quarantined"]

    # Every malformed row is quarantined at its own line, with a reason, in both modes.
    for quarantine in (batch.transformed.quarantine, streaming.quarantine):
        assert sorted(quarantine["line"].astype(int)) == bad
        assert all(isinstance(reason, str) and reason for reason in quarantine["reason"])

    # Every well-formed row is processed, to the same values in both modes.
    reference = batch.transformed.frame()
    assert reference.index.tolist() == good
    assert streaming.matrix.index.tolist() == good
    assert list(streaming.matrix.columns) == list(reference.columns)
    np.testing.assert_allclose(
        streaming.matrix.to_numpy(), reference.to_numpy(), rtol=0.0, atol=ATOL
    )
    targets = np.array([salary[line] for line in good])
    np.testing.assert_array_equal(batch.transformed.y, targets)
    np.testing.assert_array_equal(streaming.targets.to_numpy(), targets)


FIELD_TEXT = st.text(alphabet=st.sampled_from('ab ,"\r\n'), max_size=8)


@given(st.lists(FIELD_TEXT, min_size=15, max_size=15))
def test_any_quoted_record_round_trips_through_the_reader(values):
    """Fields holding commas, quotes and carriage returns come back exactly, in both
    parsers (standard library for small chunks, Arrow for large ones)."""
    from nba_pipeline.ingestion import RawChunk, parse_chunk

    buffer = io.StringIO()
    # "\r\n" as the terminator makes the writer quote fields holding either character.
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    record = buffer.getvalue().encode("utf-8")
    header = (",".join(HEADER) + "\n").encode("utf-8")
    for copies in (1, 3000):
        chunk = RawChunk([record] * copies, list(range(2, 2 + copies)))
        parsed = parse_chunk(header, chunk, list(HEADER))
        assert parsed.table.column_names == list(HEADER)
        first = [parsed.table.column(name)[0].as_py() for name in HEADER]
        last = [parsed.table.column(name)[copies - 1].as_py() for name in HEADER]
        assert first == values
        assert last == values


def test_a_constant_feature_is_selected_alike_in_both_modes(raw_csv):
    path = raw_csv([{"full_name": f"Player {index}"} for index in range(12)])  # else identical
    config = CONFIG.with_overrides(chunk_size=1, min_chunk_size=1)
    batch = run_batch(InputSource.from_path(path), config)
    streaming = run_streaming(InputSource.from_path(path), config, keep_matrix=True)
    assert batch.state.selected_numeric == streaming.state.selected_numeric
