"""Derived features, computed the same way for a whole table or for one chunk of it.

The rolling salary features are the only ones with memory across rows.  Their ordering is
the order of the input file; for each row they summarise the salaries of the previous
``window`` *training* rows of the same team (strictly before the row: never the row's own
salary, never a held-out row's salary).  :class:`RollingSalary` carries the last ``window``
training salaries of every team from one chunk to the next, so any chunking of the file
gives exactly the same values as the whole table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .cleaning import CleanedChunk, days_from_civil

# Candidate numeric features in priority order: when two are highly correlated, the
# feature selection keeps the one that comes first here.
NUMERIC_FEATURES = (
    "rating",
    "age",
    "height_m",
    "salary_team_rolling_mean",
    "draft_peak",
    "draft_round",
    "experience",
    "weight_kg",
    "bmi",
    "salary_team_rolling_std",
    "version_year",
    "draft_decade",
    "birth_month",
    "jersey",
)
# Continuous features checked for outliers with IQR fences; discrete codes such as the
# draft round have quartiles that coincide, which would flag every uncommon value.
OUTLIER_FEATURES = ("rating", "age", "height_m", "weight_kg", "bmi", "experience")
CATEGORICAL_FEATURES = ("position", "country_group", "team")
TARGET = "salary"
DAYS_PER_YEAR = 365.25


@dataclass
class FeatureChunk:
    """Candidate features of one chunk before imputation.

    ``numeric`` holds the columns of :data:`NUMERIC_FEATURES` in that order (NaN where
    missing); ``categorical`` holds Arrow string arrays (null where missing).
    """

    numeric: np.ndarray
    categorical: dict[str, pa.Array]
    target: np.ndarray
    line_numbers: np.ndarray

    def __len__(self) -> int:
        return len(self.line_numbers)

    def to_frame(self) -> pd.DataFrame:
        """The features as a DataFrame indexed by input line number (for reports and tests)."""
        frame = pd.DataFrame(
            self.numeric,
            columns=list(NUMERIC_FEATURES),
            index=pd.Index(self.line_numbers, name="line"),
        )
        for name, values in self.categorical.items():
            frame[name] = values.to_numpy(zero_copy_only=False)
        frame[TARGET] = self.target
        return frame


class RollingSalary:
    """Per-team rolling mean and standard deviation of earlier training salaries."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.history: dict[str, list[float]] = {}

    def copy(self) -> RollingSalary:
        """An independent copy, so a chunk attempt that is abandoned changes nothing.

        :meth:`apply` replaces a team's list and never changes one in place, so copying the
        mapping is enough (a deep copy would cost more than a small chunk's features).
        """
        twin = RollingSalary(self.window)
        twin.history = dict(self.history)
        return twin

    def apply(self, team: pa.Array, salary: np.ndarray, is_train: np.ndarray):
        """Rolling (mean, std) for each row; then remember this chunk's training salaries.

        Only the history of the teams in this chunk is needed: a row's values come from its
        own team, so the other teams' histories would not change any of them.
        """
        if not len(team):
            return np.empty(0), np.empty(0)
        encoded = pc.dictionary_encode(team)
        dictionary = encoded.dictionary.to_pylist()
        prior = [self.history.get(name, ()) for name in dictionary]
        history_codes = np.repeat(
            np.arange(len(dictionary), dtype=np.int64), [len(values) for values in prior]
        )
        history_salary = [value for values in prior for value in values]
        codes = np.concatenate(
            [history_codes, encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)]
        )
        salaries = np.concatenate([np.asarray(history_salary, dtype=float), salary])
        train = np.concatenate([np.ones(len(history_salary), dtype=bool), is_train])

        mean, std, last_train = _rolling_before(codes, salaries, train, self.window)
        for code, values in last_train.items():
            self.history[dictionary[code]] = values
        start = len(history_salary)
        return mean[start:], std[start:]


def _rolling_before(codes: np.ndarray, salaries: np.ndarray, train: np.ndarray, window: int):
    """For each row, mean and std of the last ``window`` training salaries of its team that
    come strictly before it; also each team's last ``window`` training salaries."""
    # Team codes are few: as 16-bit integers the stable sort is a radix sort.
    small = codes.astype(np.int16) if len(codes) and codes.max() < 2**15 else codes
    order = np.argsort(small, kind="stable")
    sorted_codes, sorted_train = codes[order], train[order]
    train_salaries = salaries[order][sorted_train]

    # Training rows before each position, counted over the whole sorted array and per team.
    before = np.cumsum(sorted_train) - sorted_train
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(order)]))
    before_in_team = before - before[starts][group]

    # Gather up to ``window`` earlier training salaries per row (NaN where there are fewer).
    # The (rows x window) arrays are large for a whole table, so they are updated in place.
    offsets = np.arange(-window, 0)
    valid = before_in_team[:, None] + offsets >= 0
    invalid = ~valid
    if len(train_salaries):
        positions = before[:, None] + offsets
        np.clip(positions, 0, len(train_salaries) - 1, out=positions)
        values = train_salaries[positions]
        values[invalid] = np.nan
    else:
        values = np.full(valid.shape, np.nan)
    count = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(values, axis=1) / count
        deviation = np.subtract(values, mean[:, None], out=values)
        deviation[invalid] = 0.0
        np.square(deviation, out=deviation)
        std = np.sqrt(deviation.sum(axis=1) / (count - 1))
    mean[count == 0] = np.nan
    std[count < 2] = np.nan

    result_mean, result_std = np.empty_like(mean), np.empty_like(std)
    result_mean[order], result_std[order] = mean, std
    return (
        result_mean,
        result_std,
        _last_per_team(sorted_codes, sorted_train, train_salaries, window),
    )


def _last_per_team(sorted_codes, sorted_train, train_salaries, window) -> dict[int, list]:
    train_codes = sorted_codes[sorted_train]
    if not len(train_codes):
        return {}
    # Training rows are sorted by team, so each team's rows are one run of the array.
    ends = np.r_[np.flatnonzero(train_codes[1:] != train_codes[:-1]) + 1, len(train_codes)]
    tails = np.maximum(ends - window, np.r_[0, ends[:-1]])
    return {
        code: train_salaries[tail:end].tolist()
        for code, tail, end in zip(
            train_codes[ends - 1].tolist(), tails.tolist(), ends.tolist(), strict=True
        )
    }


def derive(cleaned: CleanedChunk, is_train: np.ndarray, rolling: RollingSalary) -> FeatureChunk:
    """The candidate features of one chunk, in :data:`NUMERIC_FEATURES` order."""
    c = cleaned.columns
    season_start = days_from_civil(c["version_year"] - 1, 10, 1)
    rolling_mean, rolling_std = rolling.apply(c["team"], c["salary"], is_train)
    columns = {
        "rating": c["rating"],
        "age": (season_start - c["b_day"]) / DAYS_PER_YEAR,
        "height_m": c["height_m"],
        "salary_team_rolling_mean": rolling_mean,
        "draft_peak": c["draft_peak"],
        "draft_round": c["draft_round"],
        "experience": np.clip(c["version_year"] - 1 - c["draft_year"], 0, None),
        "weight_kg": c["weight_kg"],
        "bmi": c["weight_kg"] / c["height_m"] ** 2,
        "salary_team_rolling_std": rolling_std,
        "version_year": c["version_year"],
        "draft_decade": np.floor(c["draft_year"] / 10) * 10,
        "birth_month": c["birth_month"],
        "jersey": c["jersey"],
    }
    numeric = (
        np.column_stack([np.asarray(columns[name], dtype=float) for name in NUMERIC_FEATURES])
        if len(cleaned)
        else np.empty((0, len(NUMERIC_FEATURES)))
    )
    return FeatureChunk(
        numeric=numeric,
        categorical={name: c[name] for name in CATEGORICAL_FEATURES},
        target=c["salary"],
        line_numbers=cleaned.line_numbers,
    )
