"""One test per cleaning rule of ``nba_pipeline.cleaning`` on the raw NBA2K formats.

Every rule is checked twice: through its public parsing function and end to end through
:func:`~nba_pipeline.cleaning.clean` on a small CSV written into ``tmp_path`` and read with
the project's own reader, so the test sees exactly what a pipeline run sees.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nba_pipeline.cleaning import (
    FORMATS,
    KG_PER_LB,
    METRES_PER_INCH,
    UNDRAFTED_PICK,
    CleanedChunk,
    ParsedValues,
    clean,
    days_from_civil,
    fill_team,
    group_country,
    parse_birthday,
    parse_draft_peak,
    parse_draft_round,
    parse_height,
    parse_jersey,
    parse_salary,
    parse_version,
    parse_weight,
)
from nba_pipeline.ingestion import InputSource, read_table
from nba_pipeline.synth import HEADER

EPOCH = dt.date(1970, 1, 1)


def days(date: dt.date) -> int:
    return (date - EPOCH).days


def clean_file(path: Path) -> CleanedChunk:
    parsed = read_table(InputSource.from_path(path))
    return clean(parsed.table, parsed.line_numbers, parsed.records)


def strings(*values: str | None) -> pa.Array:
    return pa.array(list(values), type=pa.string())


def value(cleaned: CleanedChunk, column: str, row: int = 0):
    values = cleaned.columns[column]
    if isinstance(values, pa.Array):
        return values[row].as_py()
    return float(values[row])


# --------------------------------------------------------------------------------------
# Height, weight, salary, jersey, version: (raw, expected) per rule
# --------------------------------------------------------------------------------------

HEIGHTS = [
    pytest.param("6-9 / 2.06", 2.06, id="feet-inches-and-metres-uses-metres"),
    pytest.param("6-9", 81 * METRES_PER_INCH, id="feet-inches-only"),
    pytest.param("2.06", 2.06, id="metres-only"),
    pytest.param("7-0", 84 * METRES_PER_INCH, id="feet-inches-zero-inches"),
    pytest.param("6-11 / 2.11", 2.11, id="two-digit-inches"),
]
WEIGHTS = [
    pytest.param("250 lbs. / 113.4 kg.", 113.4, id="pounds-and-kilograms-uses-kilograms"),
    pytest.param("250 lbs.", 250 * KG_PER_LB, id="pounds-only"),
    pytest.param("205 lbs. / 93 kg.", 93.0, id="real-table-whole-kilograms"),
    pytest.param("113.4 kg.", 113.4, id="kilograms-only"),
]
SALARIES = [
    pytest.param("$37436858", 37436858.0, id="dollars"),
    pytest.param("$1,234,567", 1234567.0, id="thousands-commas"),
]


def test_constants():
    assert KG_PER_LB == 0.45359237
    assert METRES_PER_INCH == 0.0254


def test_feet_inches_only_is_2_0574_metres():
    assert parse_height(strings("6-9"))[0] == pytest.approx(2.0574, abs=1e-12)


@pytest.mark.parametrize(("raw", "expected"), HEIGHTS)
def test_parse_height(raw, expected):
    assert parse_height(strings(raw))[0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("raw", "expected"), HEIGHTS)
def test_clean_height(raw_csv, raw, expected):
    cleaned = clean_file(raw_csv([{"height": raw}]))
    assert cleaned.quarantine.empty
    assert value(cleaned, "height_m") == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("raw", "expected"), WEIGHTS)
def test_parse_weight(raw, expected):
    assert parse_weight(strings(raw))[0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("raw", "expected"), WEIGHTS)
def test_clean_weight(raw_csv, raw, expected):
    cleaned = clean_file(raw_csv([{"weight": raw}]))
    assert cleaned.quarantine.empty
    assert value(cleaned, "weight_kg") == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("raw", "expected"), SALARIES)
def test_parse_salary(raw, expected):
    assert parse_salary(strings(raw))[0] == expected


@pytest.mark.parametrize(("raw", "expected"), SALARIES)
def test_clean_salary(raw_csv, raw, expected):
    cleaned = clean_file(raw_csv([{"salary": raw}]))
    assert cleaned.quarantine.empty
    assert value(cleaned, "salary") == expected


def test_missing_salary_is_quarantined_naming_salary(raw_csv):
    path = raw_csv([{"full_name": "Kept Player"}, {"full_name": "No Pay", "salary": ""}])
    cleaned = clean_file(path)
    assert cleaned.line_numbers.tolist() == [2]
    assert cleaned.quarantine["line"].tolist() == [3]
    reason = cleaned.quarantine["reason"].iloc[0]
    assert reason.startswith("salary")
    assert "missing" in reason
    # The target is never imputed: the row is gone, not filled.
    assert not np.isnan(cleaned.columns["salary"]).any()


def test_unparseable_salary_is_quarantined_with_expected_format(raw_csv):
    cleaned = clean_file(raw_csv([{"salary": "$abc"}]))
    assert len(cleaned) == 0
    reason = cleaned.quarantine["reason"].iloc[0]
    assert "salary" in reason
    assert "'$abc'" in reason
    assert FORMATS["salary"] in reason


def test_parse_salary_rejects_letters():
    assert np.isnan(parse_salary(strings("$abc"))[0])


@pytest.mark.parametrize(("raw", "expected"), [("#23", 23.0), ("#0", 0.0), ("#7", 7.0)])
def test_jersey(raw_csv, raw, expected):
    assert parse_jersey(strings(raw))[0] == expected
    assert value(clean_file(raw_csv([{"jersey": raw}])), "jersey") == expected


@pytest.mark.parametrize(("raw", "expected"), [("NBA2k20", 2020.0), ("NBA2k21", 2021.0)])
def test_version(raw_csv, raw, expected):
    assert parse_version(strings(raw))[0] == expected
    assert value(clean_file(raw_csv([{"version": raw}])), "version_year") == expected


# --------------------------------------------------------------------------------------
# Draft, team, country
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [("1", 1.0), ("2", 2.0), ("Undrafted", 0.0)])
def test_draft_round(raw_csv, raw, expected):
    assert parse_draft_round(strings(raw))[0] == expected
    assert value(clean_file(raw_csv([{"draft_round": raw}])), "draft_round") == expected


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", 1.0), ("60", 60.0), ("Undrafted", float(UNDRAFTED_PICK))]
)
def test_draft_peak(raw_csv, raw, expected):
    assert UNDRAFTED_PICK == 61
    assert parse_draft_peak(strings(raw))[0] == expected
    assert value(clean_file(raw_csv([{"draft_peak": raw}])), "draft_peak") == expected


def test_missing_team_is_no_team(raw_csv):
    assert fill_team(strings("", None, "Utah Jazz")).to_pylist() == [
        "No Team",
        "No Team",
        "Utah Jazz",
    ]
    cleaned = clean_file(raw_csv([{"team": ""}, {"team": "Utah Jazz"}]))
    assert cleaned.quarantine.empty
    assert cleaned.columns["team"].to_pylist() == ["No Team", "Utah Jazz"]


def test_country_groups(raw_csv):
    assert group_country(strings("USA", "Canada", "", None)).to_pylist() == [
        "USA",
        "Not-USA",
        None,
        None,
    ]
    cleaned = clean_file(raw_csv([{"country": "USA"}, {"country": "Canada"}, {"country": ""}]))
    assert cleaned.quarantine.empty
    assert cleaned.columns["country_group"].to_pylist() == ["USA", "Not-USA", None]


# --------------------------------------------------------------------------------------
# Birthdays and the calendar
# --------------------------------------------------------------------------------------


def test_birthday_mm_dd_yy(raw_csv):
    day, month = parse_birthday(strings("12/30/84"), np.array([2020.0]))
    assert day[0] == days(dt.date(1984, 12, 30))
    assert month[0] == 12
    cleaned = clean_file(raw_csv([{"b_day": "12/30/84"}]))
    assert value(cleaned, "b_day") == days(dt.date(1984, 12, 30))
    assert value(cleaned, "birth_month") == 12


@pytest.mark.parametrize(
    ("raw", "version", "expected"),
    [
        pytest.param("01/15/01", "NBA2k21", dt.date(2001, 1, 15), id="01-in-2k21-is-2001"),
        pytest.param("07/06/00", "NBA2k20", dt.date(2000, 7, 6), id="00-in-2k20-is-2000"),
        pytest.param("06/29/99", "NBA2k21", dt.date(1999, 6, 29), id="99-in-2k21-is-1999"),
        pytest.param("12/30/84", "NBA2k21", dt.date(1984, 12, 30), id="84-is-1984"),
        pytest.param("03/01/1990", "NBA2k20", dt.date(1990, 3, 1), id="four-digit-year"),
    ],
)
def test_two_digit_year_pivot(raw_csv, raw, version, expected):
    year = float(parse_version(strings(version))[0])
    assert parse_birthday(strings(raw), np.array([year]))[0][0] == days(expected)
    cleaned = clean_file(raw_csv([{"b_day": raw, "version": version}]))
    assert value(cleaned, "b_day") == days(expected)


def test_impossible_date_is_quarantined(raw_csv):
    assert np.isnan(parse_birthday(strings("02/30/90"), np.array([2020.0]))[0][0])
    cleaned = clean_file(raw_csv([{"b_day": "02/30/90"}]))
    assert len(cleaned) == 0
    reason = cleaned.quarantine["reason"].iloc[0]
    assert "b_day" in reason
    assert "'02/30/90'" in reason


EDGE_DATES = [
    dt.date(1970, 1, 1),
    dt.date(1969, 12, 31),
    dt.date(1, 1, 1),
    dt.date(1600, 2, 29),
    dt.date(1899, 12, 31),
    dt.date(1900, 2, 28),
    dt.date(1900, 3, 1),
    dt.date(1999, 12, 31),
    dt.date(2000, 1, 1),
    dt.date(2000, 2, 28),
    dt.date(2000, 2, 29),
    dt.date(2000, 3, 1),
    dt.date(2004, 2, 29),
    dt.date(2100, 2, 28),
    dt.date(2100, 3, 1),
    dt.date(2400, 2, 29),
    dt.date(9999, 12, 31),
]


@pytest.mark.parametrize("date", EDGE_DATES, ids=str)
def test_days_from_civil_edge_dates(date):
    assert days_from_civil(date.year, date.month, date.day) == days(date)


def test_days_from_civil_every_day_1890_to_2110():
    start = dt.date(1890, 1, 1)
    dates = [start + dt.timedelta(days=i) for i in range((dt.date(2110, 12, 31) - start).days)]
    years = np.array([d.year for d in dates])
    months = np.array([d.month for d in dates])
    day_numbers = np.array([d.day for d in dates])
    expected = np.array([days(d) for d in dates], dtype=float)
    np.testing.assert_array_equal(days_from_civil(years, months, day_numbers), expected)


@settings(max_examples=300, deadline=None)
@given(st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)))
def test_days_from_civil_matches_datetime(date):
    assert days_from_civil(date.year, date.month, date.day) == days(date)


@pytest.mark.parametrize("year", [1900, 1990, 1992, 2000, 2001])
def test_parse_birthday_validity_matches_datetime(year):
    """Every month 1-13 and day 0-32 of a year: valid exactly when datetime accepts it."""
    raw, expected = [], []
    for month in range(1, 14):
        for day in range(0, 33):
            raw.append(f"{month:02d}/{day:02d}/{year}")
            try:
                expected.append(days(dt.date(year, month, day)))
            except ValueError:
                expected.append(math.nan)
    parsed, months = parse_birthday(strings(*raw), np.full(len(raw), 2020.0))
    np.testing.assert_array_equal(parsed, np.array(expected))
    np.testing.assert_array_equal(np.isnan(months), np.isnan(np.array(expected)))


def test_leap_days_through_clean(raw_csv):
    path = raw_csv(
        [
            {"b_day": "02/29/00"},
            {"b_day": "02/29/1900"},
            {"b_day": "02/29/88"},
            {"b_day": "02/29/89"},
        ]
    )
    cleaned = clean_file(path)
    assert cleaned.line_numbers.tolist() == [2, 4]
    np.testing.assert_array_equal(
        cleaned.columns["b_day"], [days(dt.date(2000, 2, 29)), days(dt.date(1988, 2, 29))]
    )
    assert cleaned.quarantine["line"].tolist() == [3, 5]
    assert cleaned.quarantine["reason"].str.contains("b_day").all()


# --------------------------------------------------------------------------------------
# Quarantine and missing values
# --------------------------------------------------------------------------------------


def test_unparseable_height_quarantined_with_line_and_raw_record(tmp_path):
    good = "LeBron James,97,#23,Los Angeles Lakers,F,12/30/84,6-9 / 2.06,250 lbs. / 113.4 kg.,"
    good += "$37436858,USA,2003,1,1,,NBA2k20"
    bad = "Tall Tim,80,#5,Utah Jazz,C,01/02/90,very tall,250 lbs. / 113.4 kg.,"
    bad += "$1000000,USA,2010,1,5,Duke,NBA2k20"
    header = ",".join(HEADER)
    path = tmp_path / "bad_height.csv"
    path.write_text(f"{header}\n{good}\n{good}\n{bad}\n{good}\n", encoding="utf-8")

    cleaned = clean_file(path)
    assert cleaned.line_numbers.tolist() == [2, 3, 5]
    quarantine = cleaned.quarantine
    assert list(quarantine.columns) == ["line", "reason", "raw"]
    assert quarantine["line"].tolist() == [4]
    assert quarantine["raw"].iloc[0] == bad
    reason = quarantine["reason"].iloc[0]
    assert reason.startswith("height")
    assert "'very tall'" in reason
    assert FORMATS["height"] in reason


def test_several_reasons_are_all_listed(raw_csv):
    cleaned = clean_file(raw_csv([{"height": "tall", "salary": "", "weight": "heavy"}]))
    reason = cleaned.quarantine["reason"].iloc[0]
    for column in ("height", "weight", "salary"):
        assert column in reason


OPTIONAL_NUMERIC = {
    "rating": "rating",
    "jersey": "jersey",
    "height": "height_m",
    "weight": "weight_kg",
    "b_day": "b_day",
    "draft_year": "draft_year",
    "draft_round": "draft_round",
    "draft_peak": "draft_peak",
    "version": "version_year",
}
OPTIONAL_CATEGORICAL = {"position": "position", "country": "country_group"}


@pytest.mark.parametrize(("raw_column", "column"), sorted(OPTIONAL_NUMERIC.items()))
def test_missing_optional_numeric_is_nan_not_quarantined(raw_csv, raw_column, column):
    cleaned = clean_file(raw_csv([{raw_column: ""}, {}]))
    assert cleaned.quarantine.empty
    assert cleaned.line_numbers.tolist() == [2, 3]
    assert np.isnan(cleaned.columns[column][0])
    assert not np.isnan(cleaned.columns[column][1])


@pytest.mark.parametrize(("raw_column", "column"), sorted(OPTIONAL_CATEGORICAL.items()))
def test_missing_optional_categorical_is_null_not_quarantined(raw_csv, raw_column, column):
    cleaned = clean_file(raw_csv([{raw_column: "  "}, {}]))
    assert cleaned.quarantine.empty
    assert cleaned.columns[column].to_pylist()[0] is None
    assert cleaned.columns[column].to_pylist()[1] is not None


def test_missing_birthday_also_leaves_birth_month_nan(raw_csv):
    cleaned = clean_file(raw_csv([{"b_day": ""}]))
    assert cleaned.quarantine.empty
    assert np.isnan(cleaned.columns["birth_month"][0])


def test_whitespace_around_values_is_trimmed(raw_csv):
    cleaned = clean_file(raw_csv([{"height": "  6-9 / 2.06 ", "salary": " $100 "}]))
    assert cleaned.quarantine.empty
    assert value(cleaned, "height_m") == 2.06
    assert value(cleaned, "salary") == 100.0


def test_every_row_of_the_sample_is_clean(sample_path):
    cleaned = clean_file(sample_path)
    assert cleaned.quarantine.empty
    assert len(cleaned) == 400


def test_every_row_of_the_real_table_is_clean(real_data_path):
    cleaned = clean_file(real_data_path)
    assert cleaned.quarantine.empty
    assert len(cleaned) == 439
    # The real table's whole-kilogram form, e.g. Klay Thompson's '205 lbs. / 93 kg.'.
    assert 93.0 in cleaned.columns["weight_kg"]


# --------------------------------------------------------------------------------------
# Values remembered across the chunks of a stream
# --------------------------------------------------------------------------------------

CHUNKS = (
    [{"height": "6-9 / 2.06", "rating": "97", "team": ""}, {"height": "6-7", "rating": "88"}],
    # Values seen before, a new value, a bad one, an empty one and a new team.
    [
        {"height": "6-7", "rating": "97"},
        {"height": "6-9 / 2.06", "rating": "75", "team": "Utah Jazz"},
        {"height": "tall", "rating": "88"},
        {"height": "", "rating": "97x"},
    ],
    [{"height": "6-7", "rating": "88", "team": "Utah Jazz"}],
)


def clean_chunks(raw_csv, parsed_values: ParsedValues | None) -> list[CleanedChunk]:
    cleaned = []
    for index, rows in enumerate(CHUNKS):
        parsed = read_table(InputSource.from_path(raw_csv(rows, name=f"chunk{index}.csv")))
        cleaned.append(clean(parsed.table, parsed.line_numbers, parsed.records, parsed_values))
    return cleaned


def assert_same_cleaning(got: CleanedChunk, expected: CleanedChunk) -> None:
    assert got.columns.keys() == expected.columns.keys()
    for name, values in expected.columns.items():
        if isinstance(values, pa.Array):
            assert got.columns[name].to_pylist() == values.to_pylist(), name
        else:
            np.testing.assert_array_equal(got.columns[name], values, err_msg=name)
    assert got.quarantine.to_dict("records") == expected.quarantine.to_dict("records")


def test_remembered_values_clean_every_chunk_as_parsing_it_would(raw_csv):
    parsed_values = ParsedValues()
    remembered = clean_chunks(raw_csv, parsed_values)
    for got, expected in zip(remembered, clean_chunks(raw_csv, None), strict=True):
        assert_same_cleaning(got, expected)
    assert list(remembered[1].quarantine["reason"]) == [
        f"height: value 'tall' is not {FORMATS['height']}",
        f"rating: value '97x' is not {FORMATS['rating']}",
    ]
    assert parsed_values.remembered("height") == 4  # '6-9 / 2.06', '6-7', 'tall' and ''
    assert parsed_values.remembered("salary") == 0  # one value per player: never kept


def test_a_column_with_too_many_values_is_parsed_every_time(raw_csv):
    parsed_values = ParsedValues()
    parsed_values.MAX_VALUES = 2
    remembered = clean_chunks(raw_csv, parsed_values)
    for got, expected in zip(remembered, clean_chunks(raw_csv, None), strict=True):
        assert_same_cleaning(got, expected)
    assert parsed_values.remembered("height") == 2  # the first chunk's two; no more
    assert parsed_values.remembered("rating") == 2
