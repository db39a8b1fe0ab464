"""Derived features, the rolling team-salary rule and the per-player split.

The derived features are checked on hand-made rows against values worked out with Python's
``datetime``; the rolling salary features against a plain per-row reference implementation
and under every kind of chunking; the split for player grouping, chunking and seeds.
"""

from __future__ import annotations

import datetime as dt
import functools
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nba_pipeline.cleaning import clean
from nba_pipeline.features import DAYS_PER_YEAR, NUMERIC_FEATURES, RollingSalary, derive
from nba_pipeline.ingestion import ChunkReader, InputSource, parse_chunk, read_table
from nba_pipeline.splitting import is_training_row, player_buckets
from nba_pipeline.transform import derive_features

SEED = 42
TEST_FRACTION = 0.2
WINDOW = 5
MEAN = NUMERIC_FEATURES.index("salary_team_rolling_mean")
STD = NUMERIC_FEATURES.index("salary_team_rolling_std")


def clean_file(path: Path):
    parsed = read_table(InputSource.from_path(path))
    return clean(parsed.table, parsed.line_numbers, parsed.records)


def features_of(path: Path, is_train=None, window: int = WINDOW) -> pd.DataFrame:
    cleaned = clean_file(path)
    if is_train is None:
        is_train = np.ones(len(cleaned), dtype=bool)
    return derive(cleaned, np.asarray(is_train, dtype=bool), RollingSalary(window)).to_frame()


@functools.cache
def derive_cached(path: Path, sizes: tuple[int, ...], window: int = WINDOW, seed: int = SEED):
    """:func:`derive_in_chunks`, computed once per argument set (callers only read it)."""
    return derive_in_chunks(path, sizes, window, seed)


def derive_in_chunks(path: Path, sizes, window: int = WINDOW, seed: int = SEED):
    """Derive features chunk by chunk (sizes cycle), carrying the rolling state along."""
    rolling = RollingSalary(window)
    frames, splits = [], []
    with ChunkReader(InputSource.from_path(path)) as reader:
        for index in range(10**9):
            raw = reader.take(sizes[index % len(sizes)])
            if not len(raw):
                break
            parsed = parse_chunk(reader.header, raw, reader.columns)
            derived = derive_features(parsed, rolling, seed, TEST_FRACTION)
            if len(derived.features):  # a chunk of quarantined rows adds nothing
                frames.append(derived.features.to_frame())
            splits.append(derived.is_train)
    return pd.concat(frames), np.concatenate(splits)


def reference_rolling(teams, salaries, is_train, window):
    """Per row: mean and sample std of the last ``window`` earlier training salaries of the
    row's team (NaN with fewer than 1, respectively 2, of them)."""
    history: dict[str, list[float]] = defaultdict(list)
    means, stds = [], []
    for team, salary, train in zip(teams, salaries, is_train, strict=True):
        last = history[team][-window:]
        means.append(statistics.fmean(last) if last else np.nan)
        stds.append(statistics.stdev(last) if len(last) >= 2 else np.nan)
        if train:
            history[team].append(salary)
    return np.array(means), np.array(stds)


# --------------------------------------------------------------------------------------
# Derived features on hand-made rows
# --------------------------------------------------------------------------------------


def test_age_is_years_at_october_first_before_the_game_year(raw_csv):
    frame = features_of(
        raw_csv(
            [
                {"b_day": "12/30/84", "version": "NBA2k20"},
                {"b_day": "12/30/84", "version": "NBA2k21"},
                {"b_day": "10/01/99", "version": "NBA2k20"},
                {"b_day": "02/29/00", "version": "NBA2k21"},
            ]
        )
    )
    expected = [
        (dt.date(2019, 10, 1) - dt.date(1984, 12, 30)).days / DAYS_PER_YEAR,
        (dt.date(2020, 10, 1) - dt.date(1984, 12, 30)).days / DAYS_PER_YEAR,
        (dt.date(2019, 10, 1) - dt.date(1999, 10, 1)).days / DAYS_PER_YEAR,
        (dt.date(2020, 10, 1) - dt.date(2000, 2, 29)).days / DAYS_PER_YEAR,
    ]
    np.testing.assert_allclose(frame["age"], expected, rtol=1e-12)
    assert frame["age"].iloc[2] == pytest.approx(20.0, abs=0.01)


def test_experience_is_seasons_since_the_draft(raw_csv):
    frame = features_of(
        raw_csv(
            [
                {"draft_year": "2003", "version": "NBA2k20"},
                {"draft_year": "2003", "version": "NBA2k21"},
                {"draft_year": "2019", "version": "NBA2k20"},
                {"draft_year": "2020", "version": "NBA2k20"},  # never negative
                {"draft_year": "", "version": "NBA2k20"},
            ]
        )
    )
    np.testing.assert_array_equal(frame["experience"], [16.0, 17.0, 0.0, 0.0, np.nan])


def test_bmi_is_kilograms_over_metres_squared(raw_csv):
    frame = features_of(
        raw_csv(
            [
                {"height": "6-9 / 2.06", "weight": "250 lbs. / 113.4 kg."},
                {"height": "6-0", "weight": "200 lbs."},
                {"height": "", "weight": "250 lbs. / 113.4 kg."},
            ]
        )
    )
    inches_72 = 72 * 0.0254
    expected = [113.4 / 2.06**2, 200 * 0.45359237 / inches_72**2, np.nan]
    np.testing.assert_allclose(frame["bmi"], expected, rtol=1e-12)


def test_birth_month_draft_decade_and_version_year(raw_csv):
    frame = features_of(
        raw_csv(
            [
                {"b_day": "12/30/84", "draft_year": "2003", "version": "NBA2k20"},
                {"b_day": "01/05/01", "draft_year": "2019", "version": "NBA2k21"},
                {"b_day": "07/04/77", "draft_year": "1998", "version": "NBA2k20"},
                {"b_day": "", "draft_year": "2010", "version": "NBA2k20"},
            ]
        )
    )
    np.testing.assert_array_equal(frame["birth_month"], [12.0, 1.0, 7.0, np.nan])
    np.testing.assert_array_equal(frame["draft_decade"], [2000.0, 2010.0, 1990.0, 2010.0])
    np.testing.assert_array_equal(frame["version_year"], [2020.0, 2021.0, 2020.0, 2020.0])


def test_passthrough_features_and_frame_layout(raw_csv):
    frame = features_of(raw_csv([{"rating": "97", "jersey": "#23", "height": "6-9 / 2.06"}]))
    assert list(frame.columns) == [
        *NUMERIC_FEATURES,
        "position",
        "country_group",
        "team",
        "salary",
    ]
    assert frame.index.name == "line"
    assert frame.index.tolist() == [2]
    row = frame.iloc[0]
    assert (row["rating"], row["jersey"], row["height_m"]) == (97.0, 23.0, 2.06)
    assert (row["draft_peak"], row["draft_round"]) == (1.0, 1.0)
    assert (row["position"], row["country_group"], row["team"]) == (
        "F",
        "USA",
        "Los Angeles Lakers",
    )
    assert row["salary"] == 37436858.0


# --------------------------------------------------------------------------------------
# Rolling team salary
# --------------------------------------------------------------------------------------

TEAM_ROWS = [
    ("Hawks", 1_000_000),
    ("Hawks", 2_000_000),
    ("Jazz", 9_000_000),
    ("Hawks", 4_000_000),
    ("Hawks", 8_000_000),
    ("Jazz", 7_000_000),
    ("Hawks", 16_000_000),
    ("Hawks", 32_000_000),
]


def team_rows(salaries=None):
    rows = []
    for index, (team, salary) in enumerate(TEAM_ROWS):
        salary = salary if salaries is None else salaries[index]
        rows.append({"full_name": f"Player {index}", "team": team, "salary": f"${salary}"})
    return rows


def test_rolling_matches_reference_on_hand_made_rows(raw_csv):
    frame = features_of(raw_csv(team_rows()), window=3)
    teams = [team for team, _ in TEAM_ROWS]
    salaries = [float(salary) for _, salary in TEAM_ROWS]
    mean, std = reference_rolling(teams, salaries, [True] * len(teams), 3)
    np.testing.assert_allclose(frame["salary_team_rolling_mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(frame["salary_team_rolling_std"], std, rtol=1e-12)
    # Spelled out: the first row of a team has no history, the second has no spread yet.
    assert np.isnan(frame["salary_team_rolling_mean"].iloc[0])
    assert frame["salary_team_rolling_mean"].iloc[1] == 1_000_000
    assert np.isnan(frame["salary_team_rolling_std"].iloc[1])
    assert frame["salary_team_rolling_mean"].iloc[5] == 9_000_000  # Jazz ignores the Hawks
    assert frame["salary_team_rolling_mean"].iloc[7] == pytest.approx(28_000_000 / 3)


@pytest.mark.parametrize("changed", range(len(TEAM_ROWS)))
def test_a_row_never_sees_its_own_salary(raw_csv, changed):
    before = features_of(raw_csv(team_rows(), name="before.csv"))
    salaries = [salary for _, salary in TEAM_ROWS]
    salaries[changed] = 123_456_789
    after = features_of(raw_csv(team_rows(salaries), name="after.csv"))

    columns = ["salary_team_rolling_mean", "salary_team_rolling_std"]
    team = TEAM_ROWS[changed][0]
    same_team = [i for i, (t, _) in enumerate(TEAM_ROWS) if t == team]
    for i in range(len(TEAM_ROWS)):
        row_before, row_after = before[columns].iloc[i], after[columns].iloc[i]
        if i in same_team and i > changed and same_team.index(i) - same_team.index(changed) <= 5:
            # A later row of the same team, within the window: it must see the change.
            mean_before = row_before["salary_team_rolling_mean"]
            assert mean_before != row_after["salary_team_rolling_mean"]
        else:
            # The row itself, earlier rows and other teams' rows are untouched.
            pd.testing.assert_series_equal(row_before, row_after)


def test_held_out_salaries_are_never_used(raw_csv):
    held_out = np.array([False, True, False, False, True, True, False, False])
    before = features_of(raw_csv(team_rows(), name="a.csv"), is_train=~held_out)
    salaries = [1 if out else salary for (_, salary), out in zip(TEAM_ROWS, held_out, strict=True)]
    after = features_of(raw_csv(team_rows(salaries), name="b.csv"), is_train=~held_out)
    columns = ["salary_team_rolling_mean", "salary_team_rolling_std"]
    pd.testing.assert_frame_equal(before[columns], after[columns])

    teams = [team for team, _ in TEAM_ROWS]
    reference = reference_rolling(teams, [float(s) for _, s in TEAM_ROWS], ~held_out, WINDOW)
    np.testing.assert_allclose(before["salary_team_rolling_mean"], reference[0], rtol=1e-12)
    np.testing.assert_allclose(before["salary_team_rolling_std"], reference[1], rtol=1e-12)
    # Row 3 (Hawks) follows a held-out Hawks row: it sees only row 0.
    assert before["salary_team_rolling_mean"].iloc[3] == 1_000_000


@pytest.mark.parametrize("window", [1, 2, 5, 12])
def test_rolling_matches_reference_on_the_sample(sample_path, window):
    cleaned = clean_file(sample_path)
    is_train = is_training_row(cleaned.columns["full_name"], SEED, TEST_FRACTION)
    frame = derive(cleaned, is_train, RollingSalary(window)).to_frame()
    mean, std = reference_rolling(
        cleaned.columns["team"].to_pylist(), cleaned.columns["salary"].tolist(), is_train, window
    )
    np.testing.assert_allclose(frame["salary_team_rolling_mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(frame["salary_team_rolling_std"], std, rtol=1e-12, atol=1e-6)
    assert np.isfinite(mean).sum() > 300  # the rule is exercised, not all NaN


@pytest.mark.parametrize("size", [1, 2, 7, 64, 10_000])
def test_rolling_is_identical_for_any_chunk_size(sample_path, size):
    whole, whole_split = derive_cached(sample_path, (10**9,))
    chunked, chunked_split = derive_cached(sample_path, (size,))
    pd.testing.assert_frame_equal(chunked, whole, check_exact=True)
    np.testing.assert_array_equal(chunked_split, whole_split)


def small_table(directory: Path, write_csv) -> Path:
    """60 rows over four teams plus free agents, two quarantined rows, repeated players."""
    rng = np.random.default_rng(7)
    teams = ["Hawks", "Jazz", "Heat", "Suns", ""]
    rows = []
    for index in range(60):
        name = f"Player {index % 45}"  # players 0-14 appear twice
        row = {
            "full_name": name,
            "team": teams[int(rng.integers(len(teams)))],
            "salary": f"${int(rng.integers(50_000, 40_000_000))}",
            "version": "NBA2k21" if index >= 45 else "NBA2k20",
        }
        if index in (11, 37):
            row["height"] = "unknown"
        rows.append(row)
    return write_csv(directory / "small.csv", rows)


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory, write_csv) -> Path:
    return small_table(tmp_path_factory.mktemp("rolling"), write_csv)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(sizes=st.lists(st.integers(min_value=1, max_value=70), min_size=1, max_size=12))
def test_rolling_is_identical_for_random_chunkings(small_csv, sizes):
    whole, whole_split = derive_cached(small_csv, (10**9,))
    chunked, chunked_split = derive_in_chunks(small_csv, sizes)
    pd.testing.assert_frame_equal(chunked, whole, check_exact=True)
    np.testing.assert_array_equal(chunked_split, whole_split)


def test_small_table_exercises_the_rule(small_csv):
    whole, split = derive_cached(small_csv, (10**9,))
    assert len(whole) == 58  # two quarantined rows
    assert 0 < (~split).sum() < len(split)
    assert "No Team" in set(whole["team"])
    assert whole["salary_team_rolling_std"].notna().sum() > 30


# --------------------------------------------------------------------------------------
# The split
# --------------------------------------------------------------------------------------


def split_of(path: Path, seed: int = SEED, fraction: float = TEST_FRACTION):
    cleaned = clean_file(path)
    names = cleaned.columns["full_name"]
    return names.to_pylist(), is_training_row(names, seed, fraction)


def normalised(name: str) -> str:
    return " ".join(name.split()).lower()


def assert_players_on_one_side(names, is_train):
    sides = pd.Series(is_train).groupby([normalised(n) for n in names]).nunique()
    assert (sides == 1).all()


def test_players_two_seasons_on_the_same_side_in_the_sample(sample_path):
    names, is_train = split_of(sample_path)
    repeated = pd.Series(names).duplicated(keep=False)
    assert repeated.sum() >= 2
    assert_players_on_one_side(names, is_train)


def test_players_two_seasons_on_the_same_side_in_the_real_table(real_data_path):
    names, is_train = split_of(real_data_path)
    assert pd.Series(names).duplicated().sum() == 10
    assert_players_on_one_side(names, is_train)


def test_name_spelling_variants_share_a_bucket():
    names = pa.array(["LeBron James", " lebron   JAMES ", "LEBRON\tjames", "Kevin Durant"])
    buckets = player_buckets(names, SEED)
    assert buckets[0] == buckets[1] == buckets[2]
    assert buckets[0] != buckets[3]
    assert ((buckets >= 0) & (buckets < 1)).all()


def test_split_is_the_same_for_any_chunking(sample_path):
    _, whole = split_of(sample_path)
    for size in (1, 7, 64, 1000):
        _, chunked = derive_cached(sample_path, (size,))
        np.testing.assert_array_equal(chunked, whole)


def test_a_different_seed_gives_a_different_split(sample_path):
    cleaned = clean_file(sample_path)
    names = cleaned.columns["full_name"]
    splits = {seed: is_training_row(names, seed, TEST_FRACTION) for seed in range(12)}
    np.testing.assert_array_equal(splits[SEED % 12], is_training_row(names, SEED % 12, 0.2))
    for a in splits:
        for b in splits:
            if a < b:
                assert (splits[a] != splits[b]).sum() > 10, (a, b)
    assert (is_training_row(names, 42, 0.2) != is_training_row(names, 43, 0.2)).any()


@pytest.mark.parametrize("fraction", [0.2, 0.5])
def test_test_fraction_is_roughly_respected(sample_path, fraction):
    names, is_train = split_of(sample_path, fraction=fraction)
    held_out_rows = 1 - is_train.mean()
    assert abs(held_out_rows - fraction) < 0.08
    players = pd.Series(is_train).groupby([normalised(n) for n in names]).first()
    assert abs((1 - players.mean()) - fraction) < 0.08
