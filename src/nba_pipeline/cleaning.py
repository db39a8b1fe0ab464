"""Parsing the raw NBA2K formats into typed columns, whole columns at a time.

Every rule is one vectorised Arrow compute call over a column (regular expressions run in
RE2), never a Python loop per row.  An empty field is *missing* and is imputed later from
training statistics; a field that is present but does not match its format is
*unparseable*, and its row is quarantined with the column, the value and the expected
format, because guessing would invent data.  A row whose salary (the target) or name (the
split key) is missing is quarantined too: a target is never imputed.  A record the reader
could not split into the header's fields (see :data:`~nba_pipeline.ingestion.RECORD_ERROR`)
is quarantined with that reason alone, since none of its fields can be trusted.

Accepted alternatives: a height in feet-inches only or metres only, a weight in pounds only
or kilograms only, a salary with or without the dollar sign and thousands commas (cents are
kept), and a birthday as MM/DD/YY, MM/DD/YYYY or ISO YYYY-MM-DD.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .ingestion import RECORD_ERROR

logger = logging.getLogger(__name__)

KG_PER_LB = 0.45359237
METRES_PER_INCH = 0.0254
UNDRAFTED_PICK = 61  # one past the last pick of a two-round, 60-pick draft

FORMATS = {
    "rating": "a number such as 97",
    "jersey": "'#<digits>' such as #23",
    "height": "'<feet>-<inches> / <metres>' such as 6-9 / 2.06",
    "weight": "'<lbs> lbs. / <kg> kg.' such as 250 lbs. / 113.4 kg.",
    "salary": "'$<digits>' such as $37436858 (the $ and thousands commas are optional)",
    "b_day": "a date 'MM/DD/YY' such as 12/30/84, 'MM/DD/YYYY' or ISO 'YYYY-MM-DD'",
    "draft_year": "a four-digit year such as 2003",
    "draft_round": "1, 2 or Undrafted",
    "draft_peak": "a pick number or Undrafted",
    "version": "'NBA2k<YY>' such as NBA2k20",
}

_NUMBER = r"\d+(?:\.\d+)?"
_PATTERNS = {
    "rating": rf"^(?P<v>{_NUMBER})$",
    "jersey": r"^#?\s*(?P<v>\d+)$",
    "height": rf"^(?:(?P<ft>\d+)-(?P<inch>{_NUMBER}))?\s*/?\s*(?P<m>{_NUMBER})?$",
    "weight": rf"(?i)^(?:(?P<lb>{_NUMBER})\s*lbs?\.?)?\s*/?\s*(?:(?P<kg>{_NUMBER})\s*kg\.?)?$",
    "salary": r"^\$?\s*(?P<v>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)$",
    "b_day": r"^(?:(?P<m>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{2}|\d{4})"
    r"|(?P<iso_y>\d{4})-(?P<iso_m>\d{1,2})-(?P<iso_d>\d{1,2}))$",
    "draft_year": r"^(?P<v>\d{4})$",
    "draft_number": r"^(?P<v>\d+)$",
    "version": r"(?i)^NBA\s*2K(?P<v>\d{2})$",
}


@dataclass
class CleanedChunk:
    """Typed columns of the rows that can be used, and the rows set aside with why.

    Numeric columns are float64 numpy arrays (NaN where missing); ``b_day`` is days since
    1970-01-01; categorical columns are Arrow string arrays (null where missing).
    """

    columns: dict[str, np.ndarray | pa.Array]
    line_numbers: np.ndarray
    quarantine: pd.DataFrame

    def __len__(self) -> int:
        return len(self.line_numbers)


def clean(table: pa.Table, line_numbers: np.ndarray, records: list[bytes]) -> CleanedChunk:
    """Parse one chunk of raw rows (all strings) read from the given file lines.

    Columns are selected by name, so their order in the file does not matter and columns
    the pipeline does not know are ignored.
    """
    record_error = None
    if RECORD_ERROR in table.column_names:
        record_error = table.column(RECORD_ERROR).combine_chunks()
        table = table.drop_columns([RECORD_ERROR])
    text = {
        name: pc.utf8_trim_whitespace(table.column(name).combine_chunks())
        for name in table.column_names
    }
    missing = {name: _is_missing(values) for name, values in text.items()}
    columns = parse_columns(text)

    problems = {
        raw: columns[parsed_name] for raw, parsed_name in _PARSED_FROM.items() if raw in text
    }
    unparseable = {raw: np.isnan(values) & ~missing[raw] for raw, values in problems.items()}
    unparseable["salary missing"] = missing["salary"]
    unparseable["full_name missing"] = missing["full_name"]
    if record_error is not None:
        malformed = ~_is_missing(record_error)
        # A malformed record's fields cannot be trusted: its own reason is the only one.
        unparseable = {key: mask & ~malformed for key, mask in unparseable.items()}
        unparseable = {RECORD_ERROR: malformed, **unparseable}
        text[RECORD_ERROR] = record_error
    bad = np.logical_or.reduce(list(unparseable.values()))

    quarantine = _quarantine(text, unparseable, bad, line_numbers, records)
    if bad.any():
        keep = ~bad
        columns = {name: _take(values, keep) for name, values in columns.items()}
        line_numbers = line_numbers[keep]
        logger.info(
            "quarantined %d of %d rows (first at line %d: %s)",
            bad.sum(),
            len(bad),
            quarantine["line"].iloc[0],
            quarantine["reason"].iloc[0],
        )
    return CleanedChunk(columns=columns, line_numbers=line_numbers, quarantine=quarantine)


_PARSED_FROM = {
    "rating": "rating",
    "jersey": "jersey",
    "height": "height_m",
    "weight": "weight_kg",
    "salary": "salary",
    "version": "version_year",
    "b_day": "b_day",
    "draft_year": "draft_year",
    "draft_round": "draft_round",
    "draft_peak": "draft_peak",
}


def parse_columns(text: dict[str, pa.Array]) -> dict[str, np.ndarray | pa.Array]:
    """Every cleaning rule applied to trimmed raw columns."""
    version_year = parse_version(text["version"])
    columns = {
        "full_name": text["full_name"],
        "rating": _float_group(text["rating"], "rating"),
        "jersey": parse_jersey(text["jersey"]) if "jersey" in text else None,
        "height_m": parse_height(text["height"]),
        "weight_kg": parse_weight(text["weight"]),
        "salary": parse_salary(text["salary"]),
        "version_year": version_year,
        "draft_year": _float_group(text["draft_year"], "draft_year"),
        "draft_round": parse_draft_round(text["draft_round"]),
        "draft_peak": parse_draft_peak(text["draft_peak"]),
        "team": fill_team(text["team"]),
        "position": _null_if_empty(text["position"]),
        "country_group": group_country(text["country"]),
    }
    columns["b_day"], columns["birth_month"] = parse_birthday(text["b_day"], version_year)
    if columns["jersey"] is None:
        columns["jersey"] = np.full(len(version_year), np.nan)
    return columns


def parse_height(height) -> np.ndarray:
    """'6-9 / 2.06' to metres; either half alone is accepted."""
    parts = pc.extract_regex(_strings(height), _PATTERNS["height"])
    metres = _field(parts, "m")
    imperial = (_field(parts, "ft") * 12 + _field(parts, "inch")) * METRES_PER_INCH
    return np.where(np.isnan(metres), imperial, metres)


def parse_weight(weight) -> np.ndarray:
    """'250 lbs. / 113.4 kg.' to kilograms; either half alone is accepted."""
    parts = pc.extract_regex(_strings(weight), _PATTERNS["weight"])
    kilograms = _field(parts, "kg")
    return np.where(np.isnan(kilograms), _field(parts, "lb") * KG_PER_LB, kilograms)


def parse_salary(salary) -> np.ndarray:
    """'$37436858' to dollars; the dollar sign and thousands commas are optional and cents
    are kept ('37,436,858.50' is 37436858.5)."""
    parts = pc.extract_regex(_strings(salary), _PATTERNS["salary"])
    digits = pc.replace_substring(pc.struct_field(parts, "v"), ",", "")
    return _to_float(digits)


def parse_jersey(jersey) -> np.ndarray:
    """'#23' to 23."""
    return _float_group(jersey, "jersey")


def parse_version(version) -> np.ndarray:
    """'NBA2k20' to the game's year, 2020."""
    return 2000 + _float_group(version, "version")


def parse_birthday(b_day, version_year: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """'12/30/84' (or '12/30/1984' or ISO '1984-12-30') to days since 1970-01-01, and the
    birth month.

    A two-digit year goes in the century that makes the player younger than the game's
    year: 84 is 1984 and 01 is 2001 for NBA2k21.  Impossible dates (month 13, 31 April)
    are NaN, so a present but impossible date is quarantined.  A slash date is always read
    month first, as the NBA2K exports write it.
    """
    parts = pc.extract_regex(_strings(b_day), _PATTERNS["b_day"])
    month, day, year = _field(parts, "m"), _field(parts, "d"), _field(parts, "y")
    iso = np.isnan(year)
    month = np.where(iso, _field(parts, "iso_m"), month)
    day = np.where(iso, _field(parts, "iso_d"), day)
    year = np.where(iso, _field(parts, "iso_y"), year)
    season = np.where(np.isnan(version_year), 2020, version_year) % 100
    year = np.where(year < 100, np.where(year <= season, 2000 + year, 1900 + year), year)
    valid = (month >= 1) & (month <= 12) & (day >= 1)
    safe_month = np.where(valid, month, 1)
    safe_year = np.where(valid, year, 1970)
    month_length = days_from_civil(
        safe_year + (safe_month == 12), safe_month % 12 + 1, 1
    ) - days_from_civil(safe_year, safe_month, 1)
    valid &= day <= month_length
    days = np.where(valid, days_from_civil(safe_year, safe_month, np.where(valid, day, 1)), np.nan)
    return days, np.where(valid, month, np.nan)


def days_from_civil(year, month, day) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (vectorised; H. Hinnant's method)."""
    year = np.asarray(year, dtype=float) - (np.asarray(month) <= 2)
    era = np.floor(year / 400)
    year_of_era = year - era * 400
    month = np.asarray(month, dtype=float)
    day_of_year = np.floor((153 * (month + np.where(month > 2, -3, 9)) + 2) / 5) + day - 1
    day_of_era = (
        year_of_era * 365 + np.floor(year_of_era / 4) - np.floor(year_of_era / 100) + day_of_year
    )
    return era * 146097 + day_of_era - 719468


def parse_draft_round(draft_round) -> np.ndarray:
    """'1', '2' or 'Undrafted' (which becomes 0) to a number."""
    return _draft_number(draft_round, 0)


def parse_draft_peak(draft_peak) -> np.ndarray:
    """The pick number; 'Undrafted' becomes one past the last pick."""
    return _draft_number(draft_peak, UNDRAFTED_PICK)


def fill_team(team) -> pa.Array:
    """A missing team is the 'No Team' category (a free agent), not an unknown."""
    team = _strings(team)
    return pc.if_else(_is_missing_arrow(team), "No Team", team)


def group_country(country) -> pa.Array:
    """'USA' stays 'USA', any other country becomes 'Not-USA', missing stays null."""
    country = _null_if_empty(_strings(country))
    return pc.if_else(pc.equal(country, "USA"), "USA", "Not-USA")


def _draft_number(values, undrafted_value: int) -> np.ndarray:
    values = _strings(values)
    undrafted = pc.equal(pc.utf8_lower(values), "undrafted").to_numpy(zero_copy_only=False)
    numbers = _to_float(pc.struct_field(pc.extract_regex(values, _PATTERNS["draft_number"]), "v"))
    return np.where(undrafted, float(undrafted_value), numbers)


def _float_group(values, rule: str) -> np.ndarray:
    return _field(pc.extract_regex(_strings(values), _PATTERNS[rule]), "v")


def _field(parts: pa.Array, name: str) -> np.ndarray:
    """A named group of an ``extract_regex`` result as floats; NaN where it is empty."""
    return _to_float(pc.struct_field(parts, name))


def _to_float(values: pa.Array) -> np.ndarray:
    values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
    return pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)


def _strings(values) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(values, type=pa.string())
    return values if values.type == pa.string() else pc.cast(values, pa.string())


def _null_if_empty(values: pa.Array) -> pa.Array:
    return pc.if_else(_is_missing_arrow(values), pa.scalar(None, pa.string()), values)


def _is_missing_arrow(values: pa.Array) -> pa.Array:
    return pc.or_kleene(pc.is_null(values), pc.equal(values, ""))


def _is_missing(values: pa.Array) -> np.ndarray:
    return pc.fill_null(_is_missing_arrow(values), True).to_numpy(zero_copy_only=False)


def _take(values, keep: np.ndarray):
    if isinstance(values, pa.Array):
        return values.filter(pa.array(keep))
    return values[keep]


# Shared by every chunk without a bad row (never modified): building an empty frame per
# chunk would cost more than cleaning a small chunk.
_NO_QUARANTINE = pd.DataFrame(
    {"line": pd.Series(dtype=int), "reason": pd.Series(dtype=str), "raw": pd.Series(dtype=str)}
)


def _quarantine(text, unparseable, bad, line_numbers, records) -> pd.DataFrame:
    """One row per quarantined input row: its line, every reason, and the raw record."""
    if not bad.any():
        return _NO_QUARANTINE
    rows = np.flatnonzero(bad)
    reasons = []
    for row in rows:
        parts = []
        for key, mask in unparseable.items():
            if not mask[row]:
                continue
            if key == RECORD_ERROR:
                parts.append(text[key][row].as_py())
            elif key.endswith("missing"):
                parts.append(f"{key.split()[0]}: missing (never imputed)")
            else:
                parts.append(f"{key}: value {text[key][row].as_py()!r} is not {FORMATS[key]}")
        reasons.append("; ".join(parts))
    return pd.DataFrame(
        {
            "line": line_numbers[rows],
            "reason": reasons,
            "raw": [records[row].decode("utf-8", "replace").rstrip("\r\n") for row in rows],
        }
    )
