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
from collections.abc import Sequence
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


def clean(
    table: pa.Table,
    line_numbers: np.ndarray,
    records: Sequence[bytes],
    parsed_values: ParsedValues | None = None,
) -> CleanedChunk:
    """Parse one chunk of raw rows (all strings) read from the given file lines.

    Columns are selected by name, so their order in the file does not matter and columns
    the pipeline does not know are ignored.  A column may be plain or dictionary-encoded
    strings; a column that repeats its values (most of them do: ratings, heights, teams,
    dates) is parsed once per distinct value and the results spread back to the rows, which
    gives the same values as parsing every row.  A stream of chunks passes one
    :class:`ParsedValues` to every call, so that a value seen in an earlier chunk is not
    parsed again.
    """
    record_error = None
    if RECORD_ERROR in table.column_names:
        record_error = _plain(table.column(RECORD_ERROR).combine_chunks())
        table = table.drop_columns([RECORD_ERROR])
    text = {name: _Text.of(table.column(name).combine_chunks()) for name in table.column_names}
    missing = {name: values.rows(_is_missing(values.values)) for name, values in text.items()}
    columns = _parse_text_columns(text, parsed_values)

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
        text[RECORD_ERROR] = _Text(record_error, None)
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


def concat_cleaned(parts: list[CleanedChunk]) -> CleanedChunk:
    """Consecutive cleaned chunks as one, as if the rows had been cleaned together."""
    if len(parts) == 1:
        return parts[0]
    columns = {}
    for name, first in parts[0].columns.items():
        values = [part.columns[name] for part in parts]
        columns[name] = (
            pa.concat_arrays(values) if isinstance(first, pa.Array) else np.concatenate(values)
        )
    quarantines = [part.quarantine for part in parts if len(part.quarantine)]
    if not quarantines:
        quarantine = _NO_QUARANTINE
    elif len(quarantines) == 1:
        quarantine = quarantines[0]
    else:
        quarantine = pd.concat(quarantines, ignore_index=True)
    return CleanedChunk(
        columns=columns,
        line_numbers=np.concatenate([part.line_numbers for part in parts]),
        quarantine=quarantine,
    )


# Below this many rows a column is parsed row by row: finding its distinct values would
# cost more than it saves.
_DISTINCT_MIN_ROWS = 4_096
_DISTINCT_SAMPLE = 4_096


class _Text:
    """A trimmed text column as its ``values`` and, when it repeats them, the position of
    each row's value among them (``indices``; ``None`` when there is one value per row)."""

    def __init__(self, values: pa.Array, indices: np.ndarray | None) -> None:
        self.values = values
        self.indices = indices

    @classmethod
    def of(cls, raw: pa.Array) -> _Text:
        if isinstance(raw, pa.DictionaryArray):
            if raw.null_count:
                return cls(pc.utf8_trim_whitespace(_plain(raw)), None)
            return cls(
                pc.utf8_trim_whitespace(_strings(raw.dictionary)),
                raw.indices.to_numpy(zero_copy_only=False),
            )
        if len(raw) >= _DISTINCT_MIN_ROWS and not raw.null_count and _repeats(raw):
            encoded = pc.dictionary_encode(raw)
            return cls(
                pc.utf8_trim_whitespace(_strings(encoded.dictionary)),
                encoded.indices.to_numpy(zero_copy_only=False),
            )
        return cls(pc.utf8_trim_whitespace(_strings(raw)), None)

    def rows(self, per_value: np.ndarray) -> np.ndarray:
        """Per-value results (a numpy array) spread to the rows."""
        return per_value if self.indices is None else per_value[self.indices]

    def rows_arrow(self, per_value: pa.Array) -> pa.Array:
        """Per-value results (an Arrow array) spread to the rows."""
        return per_value if self.indices is None else per_value.take(self.indices)

    def row_values(self, rows: np.ndarray) -> list:
        """The trimmed text of some rows, as Python strings."""
        positions = rows if self.indices is None else self.indices[rows]
        return self.values.take(pa.array(positions, pa.int64())).to_pylist()


def _repeats(raw: pa.Array) -> bool:
    """Whether a sample of the column repeats its values enough to parse distinct ones."""
    sample = raw.slice(0, _DISTINCT_SAMPLE)
    return len(pc.unique(sample)) <= len(sample) // 2


def _plain(values: pa.Array) -> pa.Array:
    if isinstance(values, pa.DictionaryArray):
        return values.dictionary_decode()
    return values


class ParsedValues:
    """What the values of the few-valued columns parsed to, kept across the chunks of a stream.

    Small chunks pay for every rule once per chunk (a regular expression is compiled per
    call, for one); most columns of the table take a few dozen distinct values (ratings,
    heights, weights, teams, draft rounds), so after the first chunks nearly every value has
    been parsed before.  A column's values are looked up with one ``index_in`` call; only
    values not seen yet are parsed, and those are remembered while the column holds at most
    :attr:`MAX_VALUES`.  Every rule is a function of the value alone, so the results are the
    ones parsing the chunk would give.  Names, salaries and birthdays (which also depend on
    the game version) take too many values to be worth it and are always parsed.
    """

    COLUMNS = frozenset(
        {
            "rating",
            "jersey",
            "team",
            "position",
            "height",
            "weight",
            "country",
            "draft_year",
            "draft_round",
            "draft_peak",
            "version",
        }
    )
    MAX_VALUES = 4_096

    def __init__(self) -> None:
        self._seen: dict[str, tuple[pa.Array, np.ndarray | pa.Array]] = {}

    def remembered(self, name: str) -> int:
        """How many distinct values of column ``name`` are remembered."""
        seen = self._seen.get(name)
        return 0 if seen is None else len(seen[0])

    def parse(self, name: str, values: pa.Array, parse):
        """``parse(values)``, from what earlier chunks' values parsed to where possible."""
        if name not in self.COLUMNS:
            return parse(values)
        seen = self._seen.get(name)
        if seen is not None:
            positions = pc.index_in(values, value_set=seen[0])
            if not positions.null_count:
                return _pick(seen[1], positions.to_numpy())
        parsed = parse(values)
        self._remember(name, values, parsed, seen)
        return parsed

    def _remember(self, name: str, values: pa.Array, parsed, seen) -> None:
        encoded = pc.dictionary_encode(values, null_encoding="encode")
        first = np.unique(encoded.indices.to_numpy(zero_copy_only=False), return_index=True)[1]
        keys, results = values.take(pa.array(first)), _pick(parsed, first)
        if seen is not None:
            new = ~pc.is_in(keys, value_set=seen[0]).to_numpy(zero_copy_only=False)
            keys = pa.concat_arrays([seen[0], keys.filter(pa.array(new))])
            results = _joined(seen[1], _pick(results, np.flatnonzero(new)))
        if len(keys) <= self.MAX_VALUES:
            self._seen[name] = (keys, results)


def _pick(values: np.ndarray | pa.Array, positions: np.ndarray) -> np.ndarray | pa.Array:
    if isinstance(values, np.ndarray):
        return values[positions]
    return values.take(pa.array(positions))


def _joined(first: np.ndarray | pa.Array, second: np.ndarray | pa.Array):
    if isinstance(first, np.ndarray):
        return np.concatenate([first, second])
    return pa.concat_arrays([first, second])


# The raw columns cleaning reads; any other column of the input is ignored.
USED_COLUMNS = (
    "full_name",
    "rating",
    "jersey",
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
    return _parse_text_columns({name: _Text(_strings(v), None) for name, v in text.items()})


def _parse_text_columns(
    text: dict[str, _Text], parsed_values: ParsedValues | None = None
) -> dict[str, np.ndarray | pa.Array]:
    """Every cleaning rule applied to trimmed raw columns, once per distinct value."""

    def values(name: str, parse):
        if parsed_values is None:
            return parse(text[name].values)
        return parsed_values.parse(name, text[name].values, parse)

    def number(name: str, parse) -> np.ndarray:
        return text[name].rows(values(name, parse))

    def category(name: str, parse) -> pa.Array:
        return text[name].rows_arrow(values(name, parse))

    version_year = number("version", parse_version)
    columns = {
        "full_name": category("full_name", _strings),
        "rating": number("rating", lambda values: _float_group(values, "rating")),
        "jersey": number("jersey", parse_jersey) if "jersey" in text else None,
        "height_m": number("height", parse_height),
        "weight_kg": number("weight", parse_weight),
        "salary": number("salary", parse_salary),
        "version_year": version_year,
        "draft_year": number("draft_year", lambda values: _float_group(values, "draft_year")),
        "draft_round": number("draft_round", parse_draft_round),
        "draft_peak": number("draft_peak", parse_draft_peak),
        "team": category("team", fill_team),
        "position": category("position", _null_if_empty),
        "country_group": category("country", group_country),
    }
    columns["b_day"], columns["birth_month"] = _birthdays(
        text["b_day"], text["version"], version_year
    )
    if columns["jersey"] is None:
        columns["jersey"] = np.full(len(version_year), np.nan)
    return columns


def _birthdays(
    b_day: _Text, version: _Text, version_year_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`parse_birthday` of every row, resolved once per distinct pair of birthday and
    game version when both columns repeat their values (the same arithmetic on the same
    numbers, so the same results)."""
    month, day, year = _birthday_parts(b_day.values)
    if (
        b_day.indices is None
        or version.indices is None
        or len(month) * len(version.values) > len(b_day.indices)
    ):
        return _resolve_birthday(
            b_day.rows(month), b_day.rows(day), b_day.rows(year), version_year_rows
        )
    version_year = parse_version(version.values)
    # Every (birthday, version) combination, birthday-major, then each row's combination.
    days, months = _resolve_birthday(
        np.repeat(month, len(version_year)),
        np.repeat(day, len(version_year)),
        np.repeat(year, len(version_year)),
        np.tile(version_year, len(month)),
    )
    combination = b_day.indices.astype(np.int64) * len(version_year) + version.indices
    return days[combination], months[combination]


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
    return _resolve_birthday(*_birthday_parts(b_day), version_year)


def _birthday_parts(b_day) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Month, day and year (two or four digits) as written, NaN where they are not."""
    parts = pc.extract_regex(_strings(b_day), _PATTERNS["b_day"])
    month, day, year = _field(parts, "m"), _field(parts, "d"), _field(parts, "y")
    iso = np.isnan(year)
    month = np.where(iso, _field(parts, "iso_m"), month)
    day = np.where(iso, _field(parts, "iso_d"), day)
    year = np.where(iso, _field(parts, "iso_y"), year)
    return month, day, year


def _resolve_birthday(month, day, year, version_year) -> tuple[np.ndarray, np.ndarray]:
    """Days since 1970-01-01 and the month, the century of a two-digit year chosen by the
    game's year; NaN for impossible dates."""
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
    """Whether each value is null or empty.

    For strings this is read off the array's offsets (an empty value starts where the next
    one does) instead of four kernel calls, which cost more than the test itself in a chunk
    of a few dozen rows.
    """
    offset_type = _OFFSET_TYPES.get(values.type)
    if offset_type is None or not len(values):
        return pc.fill_null(_is_missing_arrow(values), True).to_numpy(zero_copy_only=False)
    offsets = np.frombuffer(values.buffers()[1], dtype=offset_type)
    offsets = offsets[values.offset : values.offset + len(values) + 1]
    missing = offsets[1:] == offsets[:-1]
    if values.null_count:
        missing |= values.is_null().to_numpy(zero_copy_only=False)
    return missing


_OFFSET_TYPES = {pa.string(): np.int32, pa.large_string(): np.int64}


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
    masks = {key: mask[rows] for key, mask in unparseable.items()}
    # The text of only the quarantined rows, fetched once per column.
    values = {
        key: text[key].row_values(rows)
        for key, mask in masks.items()
        if mask.any() and not key.endswith("missing")
    }
    reasons = []
    for position in range(len(rows)):
        parts = []
        for key, mask in masks.items():
            if not mask[position]:
                continue
            if key == RECORD_ERROR:
                parts.append(values[key][position])
            elif key.endswith("missing"):
                parts.append(f"{key.split()[0]}: missing (never imputed)")
            else:
                parts.append(f"{key}: value {values[key][position]!r} is not {FORMATS[key]}")
        reasons.append("; ".join(parts))
    take = getattr(records, "take", None)
    raw = take(rows) if take is not None else [records[row] for row in rows.tolist()]
    return pd.DataFrame(
        {
            "line": line_numbers[rows],
            "reason": reasons,
            "raw": [record.decode("utf-8", "replace").rstrip("\r\n") for record in raw],
        }
    )
