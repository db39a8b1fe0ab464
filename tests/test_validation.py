"""Tests of the data-quality checks and drift measures in ``nba_pipeline.validation``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nba_pipeline.validation import (
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    MissingCounter,
    categorical_drift,
    check_schema,
    drift_report,
    missing_ratios,
    numeric_drift,
    outlier_rate,
)

REAL_DATA_ENV = "NBA_PIPELINE_REAL_DATA"


def _raw_table(rows: int = 3) -> pd.DataFrame:
    """A small raw table with every expected column, all values as text like read_csv gives."""
    base = {
        "full_name": ["LeBron James", "Kawhi Leonard", "Kevin Durant"],
        "rating": ["97", "97", "96"],
        "jersey": ["#23", "#2", "#7"],
        "team": ["Los Angeles Lakers", "Los Angeles Clippers", "Brooklyn Nets"],
        "position": ["F", "F", "F"],
        "b_day": ["12/30/84", "06/29/91", "09/29/88"],
        "height": ["6-9 / 2.06", "6-7 / 2.01", "6-10 / 2.08"],
        "weight": ["250 lbs. / 113.4 kg.", "225 lbs. / 102.1 kg.", "230 lbs. / 104.3 kg."],
        "salary": ["$37436858", "$32742000", "$37199000"],
        "country": ["USA", "USA", "USA"],
        "draft_year": ["2003", "2011", "2007"],
        "draft_round": ["1", "1", "1"],
        "draft_peak": ["1", "15", "2"],
        "college": [None, "San Diego State", "Texas"],
        "version": ["NBA2k20", "NBA2k20", "NBA2k20"],
    }
    return pd.DataFrame({column: values[:rows] for column, values in base.items()})


def _parse_salary(salary: pd.Series) -> pd.Series:
    """Stand-in for the cleaning step: "$<digits>" to float, NaN otherwise."""
    text = salary.astype("str")
    digits = text.str.fullmatch(r"\$\d+").fillna(False).astype(bool)
    return pd.to_numeric(text.str.slice(1).where(digits), errors="coerce").astype(float)


# --------------------------------------------------------------------------- schema


def test_schema_ok_on_complete_table():
    raw = _raw_table()
    assert check_schema(raw, _parse_salary(raw["salary"])) == (True, [])


def test_schema_ok_without_optional_columns():
    raw = _raw_table().drop(columns=list(OPTIONAL_COLUMNS))
    assert check_schema(raw, _parse_salary(raw["salary"])) == (True, [])


def test_missing_required_column_fails_schema():
    raw = _raw_table().drop(columns=["team", "country"])
    ok, issues = check_schema(raw, _parse_salary(raw["salary"]))
    assert ok is False
    assert len(issues) == 1
    assert "missing required column" in issues[0]
    assert "'team'" in issues[0] and "'country'" in issues[0]


def test_missing_salary_column_is_reported_once_and_fails():
    raw = _raw_table().drop(columns=["salary"])
    ok, issues = check_schema(raw, pd.Series([np.nan] * len(raw)))
    assert ok is False
    assert issues == [issue for issue in issues if "missing required column" in issue]


def test_extra_column_is_an_issue_but_not_a_failure():
    raw = _raw_table().assign(shoe_size=["15", "14", "16"])
    ok, issues = check_schema(raw, _parse_salary(raw["salary"]))
    assert ok is True
    assert len(issues) == 1
    assert "'shoe_size'" in issues[0] and "not a schema failure" in issues[0]


def test_non_numeric_rating_and_draft_year_are_reported():
    raw = _raw_table()
    raw.loc[1, "rating"] = "ninety"
    raw.loc[2, "draft_year"] = "n/a"
    ok, issues = check_schema(raw, _parse_salary(raw["salary"]))
    assert ok is True
    rating = [issue for issue in issues if issue.startswith("rating")]
    draft = [issue for issue in issues if issue.startswith("draft_year")]
    assert len(rating) == 1 and "row 2: 'ninety'" in rating[0] and "number" in rating[0]
    assert len(draft) == 1 and "row 3: 'n/a'" in draft[0]


def test_numeric_columns_read_as_numbers_pass():
    raw = _raw_table().astype({"rating": "int64", "draft_year": "int64"})
    assert check_schema(raw, _parse_salary(raw["salary"])) == (True, [])


def test_unparseable_salary_fails_with_examples_and_format():
    raw = _raw_table()
    raw["salary"] = ["37k", "$1,000", "$37199000"]
    ok, issues = check_schema(raw, _parse_salary(raw["salary"]))
    assert ok is False
    [issue] = issues
    assert issue.startswith("salary: 2 of 3")
    assert "row 1: '37k'" in issue and "row 2: '$1,000'" in issue
    assert '"$<digits>"' in issue


def test_unparseable_salary_examples_are_capped_at_three():
    raw = pd.concat([_raw_table()] * 3, ignore_index=True)
    raw["salary"] = ["bad"] * 5 + ["$1"] * 4
    ok, issues = check_schema(raw, _parse_salary(raw["salary"]))
    assert ok is False
    [issue] = issues
    assert "5 of 9" in issue
    assert "row 3: 'bad'" in issue and "row 4" not in issue


def test_row_numbers_are_positional_not_index_labels():
    raw = _raw_table()
    raw.index = [100, 101, 102]
    raw.loc[101, "salary"] = "oops"
    _, issues = check_schema(raw, _parse_salary(raw["salary"]))
    assert "row 2: 'oops'" in issues[0]


def test_missing_salary_fails_schema():
    raw = _raw_table()
    raw["salary"] = ["$1", None, "   "]
    ok, issues = check_schema(raw, _parse_salary(raw["salary"]))
    assert ok is False
    [issue] = issues
    assert "2 of 3" in issue and "missing" in issue and "2, 3" in issue


def test_salary_length_mismatch_is_a_caller_error():
    raw = _raw_table()
    with pytest.raises(ValueError, match="salary_parsed"):
        check_schema(raw, pd.Series([1.0]))


def test_column_constants():
    assert "salary" in REQUIRED_COLUMNS and len(REQUIRED_COLUMNS) == 13
    assert OPTIONAL_COLUMNS == ("jersey", "college")
    assert not set(REQUIRED_COLUMNS) & set(OPTIONAL_COLUMNS)


# --------------------------------------------------------------------------- missing ratios


def test_missing_ratios_count_nan_and_blank_strings_in_column_order():
    raw = pd.DataFrame(
        {
            "team": ["Lakers", None, " ", "Nets"],
            "rating": [97.0, np.nan, 90.0, 88.0],
            "college": ["", "Texas", "Duke", "\t"],
            "mixed": pd.Series([1, "", None, "x"], dtype=object),
        }
    )
    assert missing_ratios(raw) == {"team": 0.5, "rating": 0.25, "college": 0.5, "mixed": 0.5}
    assert list(missing_ratios(raw)) == ["team", "rating", "college", "mixed"]


def test_missing_ratios_are_measured_before_imputation():
    raw = _raw_table()
    raw.loc[0, "team"] = None
    imputed = raw.fillna({"team": "Unknown", "college": "None"})
    assert missing_ratios(raw)["team"] == pytest.approx(1 / 3)
    assert missing_ratios(raw)["college"] == pytest.approx(1 / 3)
    assert missing_ratios(imputed)["team"] == 0.0


def test_missing_ratios_are_plain_floats():
    ratios = missing_ratios(_raw_table())
    assert all(type(value) is float for value in ratios.values())
    json.dumps(ratios, allow_nan=False)


def test_missing_ratios_of_empty_table_are_zero():
    assert missing_ratios(_raw_table().iloc[:0]) == dict.fromkeys(_raw_table().columns, 0.0)


def test_missing_counter_rejects_chunks_with_other_columns():
    counter = MissingCounter()
    counter.update(_raw_table())
    with pytest.raises(ValueError, match="columns"):
        counter.update(_raw_table().drop(columns=["team"]))


def test_missing_counter_with_no_chunks_is_empty():
    assert MissingCounter().ratios() == {}


_cells = st.one_of(
    st.none(),
    st.just(""),
    st.just("  "),
    st.text(alphabet="ab ", min_size=1, max_size=3),
)


@st.composite
def _tables_and_cuts(draw):
    rows = draw(st.integers(min_value=0, max_value=30))
    table = pd.DataFrame(
        {
            "text": draw(st.lists(_cells, min_size=rows, max_size=rows)),
            "number": draw(
                st.lists(st.one_of(st.none(), st.floats(-5, 5)), min_size=rows, max_size=rows)
            ),
        }
    ).astype({"text": "str", "number": "float64"})
    cuts = sorted(draw(st.lists(st.integers(0, rows), max_size=5)))
    return table, cuts


@settings(max_examples=75, deadline=None)
@given(_tables_and_cuts())
def test_missing_counter_over_any_chunking_equals_whole_table(table_and_cuts):
    table, cuts = table_and_cuts
    counter = MissingCounter()
    bounds = [0, *cuts, len(table)]
    for start, stop in zip(bounds, bounds[1:], strict=False):
        counter.update(table.iloc[start:stop])
    assert counter.rows == len(table)
    assert counter.ratios() == pytest.approx(missing_ratios(table))
    assert list(counter.ratios()) == list(table.columns)


# --------------------------------------------------------------------------- outliers


def test_outlier_rate_any_and_per_column():
    flags = pd.DataFrame(
        {
            "rating": [True, False, False, False],
            "salary": pd.array([True, True, None, False], dtype="boolean"),
        }
    )
    result = outlier_rate(flags)
    assert result == {"any_rate": 0.5, "per_column": {"rating": 0.25, "salary": 0.5}}
    assert type(result["any_rate"]) is float
    json.dumps(result, allow_nan=False)


def test_outlier_rate_of_empty_flags_is_zero():
    flags = pd.DataFrame({"rating": pd.Series([], dtype=bool)})
    assert outlier_rate(flags) == {"any_rate": 0.0, "per_column": {"rating": 0.0}}


def test_outlier_rate_rejects_non_boolean_flags():
    with pytest.raises(TypeError, match="rating"):
        outlier_rate(pd.DataFrame({"rating": [1.5, 0.0]}))


# --------------------------------------------------------------------------- numeric drift


def test_ks_detects_a_shifted_normal_sample():
    rng = np.random.default_rng(0)
    reference = pd.Series(rng.normal(0.0, 1.0, 500))
    current = pd.Series(rng.normal(1.0, 1.0, 500))
    result = numeric_drift(reference, current)
    assert result["test"] == "ks_2samp"
    assert result["pvalue"] < 1e-6
    assert 0.3 < result["statistic"] < 0.5
    assert (result["n_reference"], result["n_current"]) == (500, 500)


def test_ks_does_not_flag_two_samples_of_one_distribution():
    rng = np.random.default_rng(1)
    result = numeric_drift(pd.Series(rng.normal(size=400)), pd.Series(rng.normal(size=400)))
    assert result["pvalue"] > 0.01


def test_ks_of_identical_samples_is_zero():
    values = pd.Series([3.0, 1.0, 2.0, 5.0, np.nan])
    result = numeric_drift(values, values.copy())
    assert result["statistic"] == 0.0
    assert result["pvalue"] == 1.0
    assert result["n_reference"] == 4


def test_ks_of_disjoint_samples_is_one():
    result = numeric_drift(pd.Series([1.0, 2.0, 3.0]), pd.Series([10.0, 11.0, 12.0]))
    assert result["statistic"] == 1.0


def test_ks_result_is_json_plain():
    result = numeric_drift(pd.Series([1, 2, 3]), pd.Series([2, 3, 4]))
    assert type(result["statistic"]) is float and type(result["pvalue"]) is float
    assert type(result["n_reference"]) is int
    json.dumps(result, allow_nan=False)


@pytest.mark.parametrize(
    ("reference", "current"),
    [([1.0], [1.0, 2.0]), ([1.0, 2.0], [np.nan, 3.0]), ([], [])],
)
def test_ks_with_too_few_values_gives_none_and_note(reference, current):
    result = numeric_drift(pd.Series(reference, dtype=float), pd.Series(current, dtype=float))
    assert result["statistic"] is None and result["pvalue"] is None
    assert "at least 2" in result["note"]


# --------------------------------------------------------------------------- categorical drift


def test_tvd_known_value():
    reference = pd.Series(["F", "F", "G", "C"])  # F .5, G .25, C .25
    current = pd.Series(["F", "G", "G", "G"])  # F .25, G .75
    result = categorical_drift(reference, current)
    # 0.5 * (|.5-.25| + |.25-.75| + |.25-0|) = 0.5
    assert result["statistic"] == pytest.approx(0.5)
    assert result["test"] == "total_variation_distance"
    assert (result["n_reference"], result["n_current"], result["categories"]) == (4, 4, 3)


def test_tvd_counts_missing_as_its_own_category():
    reference = pd.Series(["Lakers", "Nets"], dtype="str")
    current = pd.Series(["Lakers", None], dtype="str")
    result = categorical_drift(reference, current)
    assert result["statistic"] == pytest.approx(0.5)
    assert result["categories"] == 3


def test_tvd_treats_blank_strings_as_missing():
    result = categorical_drift(pd.Series([None, "x"]), pd.Series([" ", "x"]))
    assert result["statistic"] == 0.0


def test_tvd_identical_is_zero_and_disjoint_is_one():
    values = pd.Series(["a", "b", "b", None])
    assert categorical_drift(values, values.sample(frac=1, random_state=0))["statistic"] == 0.0
    disjoint = categorical_drift(pd.Series(["a", "b"]), pd.Series(["c", "c", "d"]))
    assert disjoint["statistic"] == 1.0


def test_tvd_of_an_empty_side_is_none_with_note():
    result = categorical_drift(pd.Series([], dtype="str"), pd.Series(["a"]))
    assert result["statistic"] is None and "at least 1" in result["note"]


_labels = st.lists(st.one_of(st.none(), st.sampled_from("abcde")), min_size=1, max_size=40)


@settings(max_examples=100, deadline=None)
@given(_labels, _labels)
def test_tvd_is_bounded_and_symmetric(left, right):
    forward = categorical_drift(pd.Series(left, dtype=object), pd.Series(right, dtype=object))
    backward = categorical_drift(pd.Series(right, dtype=object), pd.Series(left, dtype=object))
    assert 0.0 <= forward["statistic"] <= 1.0
    assert forward["statistic"] == pytest.approx(backward["statistic"])
    assert type(forward["statistic"]) is float


@settings(max_examples=50, deadline=None)
@given(_labels)
def test_tvd_of_a_sample_with_itself_is_zero(labels):
    series = pd.Series(labels, dtype=object)
    assert categorical_drift(series, series)["statistic"] == 0.0


# --------------------------------------------------------------------------- drift report


def test_drift_report_entries_in_given_order():
    reference = pd.DataFrame({"rating": [90, 91, 92], "team": ["A", "B", "A"]})
    current = pd.DataFrame({"rating": [70, 71, 72], "team": ["A", "B", "A"]})
    report = drift_report(reference, current, numeric=["rating"], categorical=["team"])
    assert list(report) == ["rating", "team"]
    assert report["rating"]["test"] == "ks_2samp" and report["rating"]["statistic"] == 1.0
    assert report["team"]["test"] == "total_variation_distance"
    assert report["team"]["statistic"] == 0.0
    json.dumps(report, allow_nan=False)


def test_drift_report_rejects_unknown_or_doubly_typed_features():
    table = pd.DataFrame({"rating": [1, 2], "team": ["A", "B"]})
    with pytest.raises(ValueError, match="'salary'"):
        drift_report(table, table, numeric=["salary"], categorical=[])
    with pytest.raises(ValueError, match="both"):
        drift_report(table, table, numeric=["rating"], categorical=["rating"])


# --------------------------------------------------------------------------- real data


def test_missing_ratios_on_the_real_file():
    location = os.environ.get(REAL_DATA_ENV)
    if not location:
        pytest.skip(f"{REAL_DATA_ENV} is not set to the path of nba2k-full.csv")
    raw = pd.read_csv(Path(location))
    ratios = missing_ratios(raw)
    assert len(raw) == 439
    assert ratios["team"] == pytest.approx(23 / 439)
    assert ratios["college"] == pytest.approx(69 / 439)
    others = {
        column: ratio for column, ratio in ratios.items() if column not in {"team", "college"}
    }
    assert set(others.values()) == {0.0}
