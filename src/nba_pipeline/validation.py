"""Data-quality checks of the raw NBA2K player table and drift between two samples of it.

Everything here is a pure function over pandas objects: no files are read or written, and the
results are plain Python values (``float``, ``int``, ``bool``, ``str``, ``None``, lists and
dicts of those) so a caller can put them straight into a JSON report.

A cell counts as *missing* when it is NaN/None/NA or a string that is empty or only
whitespace, because ``pandas.read_csv`` keeps a quoted ``" "`` as text although it carries no
value.  The same definition is used by the schema check, the missing ratios and the
categorical drift.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS: tuple[str, ...] = (
    "full_name",
    "rating",
    "team",
    "position",
    "b_day",
    "height",
    "weight",
    "salary",
    "country",
    "draft_year",
    "draft_round",
    "draft_peak",
    "version",
)
OPTIONAL_COLUMNS: tuple[str, ...] = ("jersey", "college")

NUMERIC_COLUMNS: tuple[str, ...] = ("rating", "draft_year")
SALARY_FORMAT = '"$<digits>", e.g. "$37436858"'
MISSING_LABEL = "<missing>"
MAX_EXAMPLES = 3


# --------------------------------------------------------------------------- missing cells


def missing_mask(series: pd.Series) -> np.ndarray:
    """Boolean array marking the cells of ``series`` that are NaN or blank strings."""
    missing = series.isna().to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        return missing
    if isinstance(series.dtype, pd.StringDtype):
        return missing | series.str.strip().eq("").to_numpy(dtype=bool, na_value=False)
    # Object columns may mix strings with numbers, so test each cell's type.
    blank = np.fromiter(
        (isinstance(value, str) and not value.strip() for value in series.array),
        dtype=bool,
        count=len(series),
    )
    return missing | blank


class MissingCounter:
    """Running count of missing cells per column, fed one chunk of the raw table at a time.

    After feeding every chunk of a table, :meth:`ratios` equals :func:`missing_ratios` of the
    whole table, whatever the chunking, so a streaming run reports the same numbers as a
    batch run.
    """

    def __init__(self) -> None:
        self._counts: dict[str, int] | None = None
        self._rows = 0

    @property
    def rows(self) -> int:
        """Number of rows seen so far."""
        return self._rows

    def update(self, raw_chunk: pd.DataFrame) -> None:
        """Add the missing cells of one chunk; every chunk must have the first chunk's columns."""
        columns = [str(column) for column in raw_chunk.columns]
        if self._counts is None:
            self._counts = dict.fromkeys(columns, 0)
        else:
            self._check_same_columns(columns)
        for position, column in enumerate(columns):
            self._counts[column] += int(missing_mask(raw_chunk.iloc[:, position]).sum())
        self._rows += len(raw_chunk)

    def ratios(self) -> dict[str, float]:
        """Fraction of rows with a missing cell, per column in the table's column order.

        With no rows seen every ratio is 0.0: no cell is missing, and 0.0 keeps the report
        JSON-valid where NaN would not be.
        """
        counts = self._counts or {}
        if self._rows == 0:
            return dict.fromkeys(counts, 0.0)
        return {column: count / self._rows for column, count in counts.items()}

    def _check_same_columns(self, columns: list[str]) -> None:
        if columns != list(self._counts or {}):
            raise ValueError(
                f"chunk columns {columns} differ from the first chunk's {list(self._counts)}; "
                "all chunks of one table must share its columns"
            )


def missing_ratios(raw: pd.DataFrame) -> dict[str, float]:
    """Fraction of missing (NaN or blank) cells per column of the raw table, before imputation.

    Keys follow the table's column order.  On the real NBA2K file this gives ``team`` 23/439,
    ``college`` 69/439 and 0.0 for every other column.
    """
    counter = MissingCounter()
    counter.update(raw)
    return counter.ratios()


# --------------------------------------------------------------------------- schema


def check_schema(raw: pd.DataFrame, salary_parsed: pd.Series) -> tuple[bool, list[str]]:
    """Check the raw table's layout and salaries; return ``(schema_ok, issues)``.

    ``raw`` is the table as read from the CSV; ``salary_parsed`` is its salary column parsed to
    float by the cleaning step (NaN where parsing failed), aligned with ``raw`` row by row.
    Each issue is one readable sentence naming the column, the count of bad values, examples
    with their 1-based data row numbers (row 1 is the first line after the header) and what
    was expected.  When ``raw``'s index is named ``"line"`` it holds the file line of each
    row, and the examples name those lines instead ("line 7: 'abc'").

    ``schema_ok`` is False when a required column is missing or any salary is missing or
    unparseable, because the pipeline cannot build its target without them.  Extra columns
    and non-numeric ``rating``/``draft_year`` values are reported as issues but do not fail
    the schema: extra columns are simply ignored downstream, and a non-numeric value becomes
    NaN that the cleaning imputes like any other missing value.
    """
    if len(salary_parsed) != len(raw):
        raise ValueError(
            f"salary_parsed has {len(salary_parsed)} values but the raw table has {len(raw)} rows"
        )
    columns = [str(column) for column in raw.columns]
    absent = [column for column in REQUIRED_COLUMNS if column not in columns]
    issues = _missing_column_issues(absent) + _extra_column_issues(columns)
    for column in NUMERIC_COLUMNS:
        if column in columns:
            issues += _non_numeric_issues(column, raw[column])
    salary_issues: list[str] = []
    if "salary" in columns:
        salary_issues = _salary_issues(raw["salary"], salary_parsed)
    schema_ok = not absent and not salary_issues
    issues += salary_issues
    logger.debug("schema check: ok=%s with %d issue(s)", schema_ok, len(issues))
    return schema_ok, issues


def _missing_column_issues(absent: list[str]) -> list[str]:
    if not absent:
        return []
    return [
        f"missing required column(s) {_quoted(absent)}; the pipeline needs all of "
        f"{_quoted(REQUIRED_COLUMNS)}"
    ]


def _extra_column_issues(columns: list[str]) -> list[str]:
    known = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)
    extra = [column for column in columns if column not in known]
    if not extra:
        return []
    return [
        f"unexpected extra column(s) {_quoted(extra)}: expected only "
        f"{_quoted(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}; they are ignored (not a schema failure)"
    ]


def _non_numeric_issues(column: str, values: pd.Series) -> list[str]:
    present = ~missing_mask(values)
    numeric = pd.to_numeric(values, errors="coerce").notna().to_numpy(dtype=bool)
    bad = present & ~numeric
    if not bad.any():
        return []
    return [
        f"{column}: {int(bad.sum())} of {int(present.sum())} present value(s) are not numeric "
        f"({_examples(values, bad)}); expected a number"
    ]


def _salary_issues(raw_salary: pd.Series, salary_parsed: pd.Series) -> list[str]:
    missing = missing_mask(raw_salary)
    parsed = pd.to_numeric(salary_parsed, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    # inf would pass a NaN test yet is no salary, so only finite numbers count as parsed.
    unparsed = ~missing & ~np.isfinite(parsed)
    issues = []
    if unparsed.any():
        issues.append(
            f"salary: {int(unparsed.sum())} of {int((~missing).sum())} present value(s) could "
            f"not be parsed ({_examples(raw_salary, unparsed)}); expected the format "
            f"{SALARY_FORMAT}"
        )
    if missing.any():
        issues.append(
            f"salary: {int(missing.sum())} of {len(raw_salary)} value(s) are missing "
            f"({_row_list(missing, raw_salary.index)}); expected every player to have a salary "
            "in the format "
            f"{SALARY_FORMAT}"
        )
    return issues


def _examples(values: pd.Series, bad: np.ndarray) -> str:
    """Up to MAX_EXAMPLES bad cells as ``row 3: 'abc'`` using 1-based positional rows, or as
    ``line 4: 'abc'`` when the index holds file lines."""
    positions = np.flatnonzero(bad)[:MAX_EXAMPLES]
    shown = ", ".join(f"{_where(values.index, pos)}: {values.iloc[pos]!r}" for pos in positions)
    return f"e.g. {shown}" if bad.sum() > MAX_EXAMPLES else shown


def _row_list(mask: np.ndarray, index: pd.Index | None = None) -> str:
    positions = np.flatnonzero(mask)
    if index is not None and index.name == "line":
        lines = ", ".join(str(index[pos]) for pos in positions[:MAX_EXAMPLES])
        more = ", ..." if len(positions) > MAX_EXAMPLES else ""
        return f"line(s) {lines}{more}"
    rows = ", ".join(str(pos + 1) for pos in positions[:MAX_EXAMPLES])
    more = ", ..." if len(positions) > MAX_EXAMPLES else ""
    return f"row(s) {rows}{more}"


def _where(index: pd.Index, position: int) -> str:
    if index.name == "line":
        return f"line {index[position]}"
    return f"row {position + 1}"


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(repr(name) for name in names)


# --------------------------------------------------------------------------- outliers


def outlier_rate(flags: pd.DataFrame) -> dict:
    """Share of rows flagged as IQR outliers, overall and per feature.

    ``flags`` holds one boolean column per numeric feature (nullable booleans allowed; NA
    counts as not flagged).  Returns ``{"any_rate": fraction of rows with at least one flag,
    "per_column": {column: fraction of rows flagged}}``; with no rows every rate is 0.0.
    """
    for column in flags.columns:
        if not pd.api.types.is_bool_dtype(flags[column].dtype):
            raise TypeError(
                f"outlier flag column {column!r} has dtype {flags[column].dtype}; expected bool"
            )
    as_bool = flags.fillna(False).astype(bool)
    per_column = {str(column): _rate(as_bool[column].to_numpy()) for column in as_bool.columns}
    return {"any_rate": _rate(as_bool.to_numpy().any(axis=1)), "per_column": per_column}


def _rate(mask: np.ndarray) -> float:
    return float(mask.mean()) if len(mask) else 0.0


# --------------------------------------------------------------------------- drift


def numeric_drift(reference: pd.Series, current: pd.Series) -> dict:
    """Two-sample Kolmogorov-Smirnov test of a numeric feature between two samples.

    Runs ``scipy.stats.ks_2samp`` on the non-missing values of each side (values that are not
    numbers count as missing).  Returns ``{"test": "ks_2samp", "statistic", "pvalue",
    "n_reference", "n_current"}``; identical samples give statistic 0.0, disjoint ones 1.0.
    With fewer than two values on a side the test says nothing useful, so statistic and
    pvalue are None and a ``"note"`` says why.
    """
    ref = _numeric_values(reference)
    cur = _numeric_values(current)
    result: dict = {
        "test": "ks_2samp",
        "statistic": None,
        "pvalue": None,
        "n_reference": len(ref),
        "n_current": len(cur),
    }
    if len(ref) < 2 or len(cur) < 2:
        result["note"] = (
            "KS test needs at least 2 non-missing values per sample; "
            f"reference has {len(ref)}, current has {len(cur)}"
        )
        return result
    from scipy import stats  # imported when first used: a second of start-up

    test = stats.ks_2samp(ref, cur)
    result["statistic"] = float(test.statistic)
    result["pvalue"] = float(test.pvalue)
    return result


def _numeric_values(series: pd.Series) -> np.ndarray:
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return values[~np.isnan(values)]


def categorical_drift(reference: pd.Series, current: pd.Series) -> dict:
    """Total variation distance between the category frequencies of two samples.

    TVD = 0.5 * sum over the union of categories of ``|p - q|``, where missing cells form their
    own category ``"<missing>"``; it is 0.0 for identical distributions and 1.0 for samples
    with no category in common.  Categories are compared as strings so the same value read
    with different dtypes is not mistaken for drift.  Returns ``{"test":
    "total_variation_distance", "statistic", "n_reference", "n_current", "categories"}`` where
    ``categories`` is the number of distinct categories in the union.  An empty side has no
    distribution, so statistic is None and a ``"note"`` says why.
    """
    ref = _category_shares(reference)
    cur = _category_shares(current)
    union = ref.index.union(cur.index)
    result: dict = {
        "test": "total_variation_distance",
        "statistic": None,
        "n_reference": len(reference),
        "n_current": len(current),
        "categories": len(union),
    }
    if len(reference) == 0 or len(current) == 0:
        result["note"] = (
            "total variation distance needs at least 1 value per sample; "
            f"reference has {len(reference)}, current has {len(current)}"
        )
        return result
    gaps = (ref.reindex(union, fill_value=0.0) - cur.reindex(union, fill_value=0.0)).abs()
    # fsum keeps the sum exact enough; the clamp removes the last rounding ulp outside [0, 1].
    result["statistic"] = min(1.0, max(0.0, 0.5 * math.fsum(gaps.tolist())))
    return result


def _category_shares(series: pd.Series) -> pd.Series:
    """Relative frequency of each category label, missing cells labelled ``<missing>``."""
    labels = [
        MISSING_LABEL if is_missing else str(value)
        for value, is_missing in zip(series.array, missing_mask(series), strict=True)
    ]
    return pd.Series(labels, dtype=object).value_counts(normalize=True)


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
) -> dict[str, dict]:
    """Drift of every named feature between two tables, in the given order.

    Numeric features get :func:`numeric_drift`, categorical ones :func:`categorical_drift`.
    A feature named in both lists or absent from either table is a caller error and raises
    ``ValueError`` rather than silently dropping out of the report.
    """
    _check_features(reference, current, numeric, categorical)
    report: dict[str, dict] = {}
    for feature in numeric:
        report[feature] = numeric_drift(reference[feature], current[feature])
    for feature in categorical:
        report[feature] = categorical_drift(reference[feature], current[feature])
    logger.debug("drift report over %d feature(s)", len(report))
    return report


def _check_features(
    reference: pd.DataFrame, current: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> None:
    both = sorted(set(numeric) & set(categorical))
    if both:
        raise ValueError(f"feature(s) {_quoted(both)} are listed as both numeric and categorical")
    for name, table in (("reference", reference), ("current", current)):
        absent = [feature for feature in [*numeric, *categorical] if feature not in table.columns]
        if absent:
            raise ValueError(f"{name} table has no column(s) {_quoted(absent)}")
